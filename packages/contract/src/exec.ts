import { z } from "zod";
import { absolutePathSchema, commandArgSchema, envSchema, sandboxUserSchema, timestampSchema } from "./common.js";
import { limits } from "./sandbox.js";

/**
 * What a command runs and as whom: the part of an exec request that reaches the sandbox. The exec service
 * checks it again for requests that came through a dialect's own schema, so every API has these rules.
 */
export const execTargetShape = {
  command: commandArgSchema.min(1).optional().describe("Run by /bin/sh -c"),
  args: z.array(commandArgSchema).min(1).max(4096).optional().describe("argv, run without a shell"),
  cwd: absolutePathSchema.optional(),
  env: envSchema.optional(),
  user: sandboxUserSchema
    .optional()
    .describe("Run as this user of the sandbox (default: the sandbox's user, else root)"),
};
export const execTargetSchema = z.object(execTargetShape);

export const execRequestSchema = z
  .strictObject({
    ...execTargetShape,
    timeoutMs: z.number().int().min(1).max(limits.execTimeoutMs.max).optional(),
    stdin: z
      .string()
      .max(16 * 1024 * 1024)
      .optional(),
    background: z.boolean().default(false),
    stdinOpen: z
      .boolean()
      .default(false)
      .describe("Background only: keep stdin open after `stdin` for POST …/commands/{id}/stdin"),
  })
  .superRefine((req, ctx) => {
    if (req.stdinOpen && !req.background) {
      ctx.addIssue({ code: "custom", path: ["stdinOpen"], message: "only for background commands" });
    }
    if ((req.command === undefined) === (req.args === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: req.command === undefined ? ["command"] : ["args"],
        message: "exactly one of command and args is required",
      });
    }
  });
export type ExecRequest = z.input<typeof execRequestSchema>;

export const execResultSchema = z.object({
  commandId: z.string(),
  exitCode: z.number().int(),
  stdout: z.string(),
  stderr: z.string(),
  durationMs: z.number(),
  timedOut: z.boolean(),
  truncated: z.boolean().describe("Output went over the cap and the rest was dropped"),
});
export type ExecResult = z.infer<typeof execResultSchema>;

export const backgroundExecResponseSchema = z.object({ commandId: z.string(), pid: z.number().int() });

/** One line of `application/x-ndjson` exec output. */
export const execStreamEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("start"), commandId: z.string(), pid: z.number().int() }),
  z.object({ type: z.literal("stdout"), data: z.string() }),
  z.object({ type: z.literal("stderr"), data: z.string() }),
  z.object({
    type: z.literal("exit"),
    exitCode: z.number().int(),
    durationMs: z.number(),
    timedOut: z.boolean(),
    truncated: z.boolean(),
  }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
]);
export type ExecStreamEvent = z.infer<typeof execStreamEventSchema>;

export const commandSchema = z.object({
  commandId: z.string(),
  sandboxId: z.string(),
  command: z.array(z.string()),
  cwd: z.string(),
  background: z.boolean(),
  status: z.enum(["running", "exited", "killed", "lost"]),
  pid: z.number().int().nullable(),
  exitCode: z.number().int().nullable(),
  timedOut: z.boolean(),
  startedAt: timestampSchema,
  finishedAt: timestampSchema.nullable(),
});
export type Command = z.infer<typeof commandSchema>;

export const signalNames = ["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as const;
export const killCommandRequestSchema = z.strictObject({
  signal: z.union([z.enum(signalNames), z.number().int().min(1).max(64)]).default("SIGKILL"),
});

/** `POST /v1/sandboxes/{id}/commands/{commandId}/stdin`: more input for a command started with stdinOpen. */
export const commandStdinRequestSchema = z
  .strictObject({
    data: z
      .string()
      .max(16 * 1024 * 1024)
      .optional()
      .describe("Text, sent as UTF-8"),
    dataBase64: z
      .string()
      .max(22 * 1024 * 1024)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")
      .optional(),
    close: z.boolean().default(false).describe("Close stdin after this input (the command sees end of file)"),
  })
  .refine((b) => !(b.data !== undefined && b.dataBase64 !== undefined), "at most one of data and dataBase64");
