import { z } from "zod";
import { absolutePathSchema, envSchema, timestampSchema } from "./common.js";

/** Languages a code context can run: each is one live interpreter in the sandbox. */
export const codeLanguages = ["python", "javascript", "bash"] as const;
export const codeLanguageSchema = z.enum(codeLanguages);
export type CodeLanguage = z.infer<typeof codeLanguageSchema>;

/** Longest a cell may run before it is interrupted (the context keeps its state). */
export const MAX_CELL_TIMEOUT_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_CELL_TIMEOUT_MS = 5 * 60 * 1000;

export const codeContextIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '-' or '_'");

export const createCodeContextRequestSchema = z.strictObject({
  language: codeLanguageSchema.default("python"),
  cwd: absolutePathSchema.optional().describe("Working directory of the interpreter (default: the user's home)"),
  env: envSchema.optional().describe("Environment of the interpreter, on top of the sandbox's"),
});
export type CreateCodeContextRequest = z.input<typeof createCodeContextRequestSchema>;

export const codeContextSchema = z.object({
  id: z.string(),
  language: codeLanguageSchema,
  cwd: z.string(),
  /** A language's default context is made by the first cell run in that language without a context. */
  isDefault: z.boolean(),
  createdAt: timestampSchema,
});
export type CodeContext = z.infer<typeof codeContextSchema>;

export const runCodeRequestSchema = z
  .strictObject({
    code: z.string().max(16 * 1024 * 1024),
    language: codeLanguageSchema.optional().describe("Runs in this language's default context (default python)"),
    contextId: codeContextIdSchema.optional().describe("Runs in this context; excludes `language`"),
    env: envSchema.optional().describe("Environment variables set for this cell only"),
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(MAX_CELL_TIMEOUT_MS)
      .optional()
      .describe(
        `Interrupts the cell after this long (default ${DEFAULT_CELL_TIMEOUT_MS}); the context keeps its state`,
      ),
  })
  .superRefine((req, ctx) => {
    if (req.language !== undefined && req.contextId !== undefined) {
      ctx.addIssue({ code: "custom", path: ["contextId"], message: "give either contextId or language, not both" });
    }
  });
export type RunCodeRequest = z.input<typeof runCodeRequestSchema>;

/**
 * A rich result as a MIME bundle, Jupyter's way: `text/plain`, `text/html`, `text/markdown`, `text/latex`,
 * `image/png` and `image/jpeg` (base64), `image/svg+xml`, `application/json` (a JSON value), and others.
 */
export const mimeBundleSchema = z.record(z.string(), z.unknown());

export const codeErrorSchema = z.object({
  name: z.string().describe("e.g. ValueError, ReferenceError, TimeoutError"),
  value: z.string(),
  traceback: z.string(),
});
export type CodeError = z.infer<typeof codeErrorSchema>;

/** How a cell ended: `timeout` and `interrupted` (the client went away) left the context running. */
export const cellStatusSchema = z.enum(["ok", "error", "timeout", "interrupted"]);

/** One event of a running cell, in order; `end` is always last. */
export const codeEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("stdout"), text: z.string() }),
  z.object({ type: z.literal("stderr"), text: z.string() }),
  z.object({
    type: z.literal("result"),
    isMainResult: z.boolean().describe("The cell's value (as opposed to something displayed, like a figure)"),
    data: mimeBundleSchema,
  }),
  z.object({ type: z.literal("error"), ...codeErrorSchema.shape }),
  z.object({
    type: z.literal("end"),
    status: cellStatusSchema,
    executionCount: z.number().int().nullable(),
    durationMs: z.number(),
  }),
]);
export type CodeEvent = z.infer<typeof codeEventSchema>;

/** Response header of a cell streamed as NDJSON: the id of the context it runs in (the events don't say). */
export const CODE_CONTEXT_HEADER = "x-code-context-id";

/** A finished cell, gathered from its events (the answer without `Accept: application/x-ndjson`). */
export const codeExecutionSchema = z.object({
  contextId: z.string(),
  stdout: z.array(z.string()),
  stderr: z.array(z.string()),
  results: z.array(z.object({ isMainResult: z.boolean(), data: mimeBundleSchema })),
  error: codeErrorSchema.nullable(),
  status: cellStatusSchema,
  executionCount: z.number().int().nullable(),
  durationMs: z.number(),
});
export type CodeExecution = z.infer<typeof codeExecutionSchema>;

/** A cell's execution before any of its events. */
export function emptyCodeExecution(contextId: string): CodeExecution {
  return {
    contextId,
    stdout: [],
    stderr: [],
    results: [],
    error: null,
    status: "ok",
    executionCount: null,
    durationMs: 0,
  };
}

/** Adds one of a cell's events to its gathered execution. */
export function gatherCodeEvent(execution: CodeExecution, event: CodeEvent): void {
  switch (event.type) {
    case "stdout":
    case "stderr":
      execution[event.type].push(event.text);
      break;
    case "result":
      execution.results.push({ isMainResult: event.isMainResult, data: event.data });
      break;
    case "error":
      execution.error = { name: event.name, value: event.value, traceback: event.traceback };
      break;
    case "end":
      execution.status = event.status;
      execution.executionCount = event.executionCount;
      execution.durationMs = event.durationMs;
      break;
  }
}
