import { z } from "zod";
import { absolutePathSchema, commandArgSchema, envSchema, sandboxUserSchema } from "./common.js";

export const terminalSizeSchema = z.strictObject({
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
});

export const createTerminalRequestSchema = z.strictObject({
  cols: z.number().int().min(1).max(1000).default(80),
  rows: z.number().int().min(1).max(1000).default(24),
  command: z
    .array(commandArgSchema)
    .min(1)
    .max(4096)
    .optional()
    .describe("argv of the program on the terminal; default the user's login shell (bash, else sh)"),
  cwd: absolutePathSchema.optional(),
  env: envSchema.optional(),
  user: sandboxUserSchema.optional(),
});
export type CreateTerminalRequest = z.input<typeof createTerminalRequestSchema>;

export const terminalInputSchema = z
  .strictObject({
    data: z
      .string()
      .max(1024 * 1024)
      .optional()
      .describe("Text, sent as UTF-8"),
    dataBase64: z
      .string()
      .max(1400 * 1024)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")
      .optional(),
  })
  .refine((b) => (b.data === undefined) !== (b.dataBase64 === undefined), "exactly one of data and dataBase64");

export const terminalSchema = z.object({
  terminalId: z.string().describe("Also the id of the command running on it"),
  sandboxId: z.string(),
  pid: z.number().int(),
  command: z.array(z.string()),
  cols: z.number().int(),
  rows: z.number().int(),
  attached: z.boolean().describe("A client is connected to its WebSocket"),
  exitCode: z.number().int().nullable(),
});
export type Terminal = z.infer<typeof terminalSchema>;
export const listTerminalsResponseSchema = z.object({ terminals: z.array(terminalSchema) });

/**
 * Control messages on a terminal's WebSocket, as text frames (binary frames carry raw bytes: input from
 * the client, output from the server).
 */
export const terminalClientMessageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("input"), data: z.string() }),
  z.object({
    type: z.literal("resize"),
    cols: z.number().int().min(1).max(1000),
    rows: z.number().int().min(1).max(1000),
  }),
]);
export type TerminalClientMessage = z.infer<typeof terminalClientMessageSchema>;

export const terminalServerMessageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("exit"), exitCode: z.number().int() }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
]);
export type TerminalServerMessage = z.infer<typeof terminalServerMessageSchema>;
