import { z } from "zod";
import { timestampSchema } from "./common.js";

/** Inside a desktop sandbox: x11vnc listens on 5900 (loopback only), websockify serves noVNC on 6080. */
export const DESKTOP_VNC_PORT = 5900;
export const DESKTOP_STREAM_PORT = 6080;

export const startDesktopStreamRequestSchema = z.strictObject({
  viewOnly: z
    .boolean()
    .default(false)
    .describe("Watch only: the VNC server ignores keyboard and mouse input from viewers (x11vnc -viewonly)"),
});
export type StartDesktopStreamRequest = z.input<typeof startDesktopStreamRequestSchema>;

export const desktopStreamSchema = z.object({
  streamId: z.string().describe("Changes whenever a start replaces the stream (and with it the token)"),
  viewOnly: z.boolean(),
  url: z
    .string()
    .describe("The noVNC page through Sandpit's port proxy, ready to open: it carries the token and connects"),
  token: z
    .string()
    .describe("The stream's own token: opens the sandbox's stream port (6080) only, until the stream is stopped"),
  startedAt: timestampSchema,
  expiresAt: timestampSchema.nullable().describe("Always null: a stream lives until it is stopped or its sandbox ends"),
});
export type DesktopStream = z.infer<typeof desktopStreamSchema>;
