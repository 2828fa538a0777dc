import { z } from "zod";
import { timestampSchema } from "./common.js";

export const templateStatuses = ["missing", "building", "ready", "failed"] as const;

export const templateProgressSchema = z.object({
  phase: z.string().describe("What the build does now: resolving, downloading, installing, finalizing"),
  percent: z.number().min(0).max(100).nullable(),
  message: z.string(),
});

export const templateSchema = z.object({
  name: z.string(),
  kind: z.enum(["builtin", "custom"]).describe("Shipped with Sandpit, or built by this organisation"),
  description: z.string(),
  from: z.string().nullable().describe("The template or image it is built on"),
  status: z.enum(templateStatuses),
  progress: templateProgressSchema.nullable(),
  error: z.string().nullable(),
  sizeBytes: z.number().int().nullable(),
  builtAt: timestampSchema.nullable(),
});
export type Template = z.infer<typeof templateSchema>;
export const listTemplatesResponseSchema = z.object({ templates: z.array(templateSchema) });

/** One NDJSON line of `GET /v1/templates/{name}/build`. */
export const templateBuildEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("progress"), phase: z.string(), percent: z.number().nullable(), message: z.string() }),
  z.object({ type: z.literal("log"), line: z.string() }),
  z.object({ type: z.literal("done"), template: templateSchema }),
  z.object({ type: z.literal("error"), message: z.string() }),
]);
export type TemplateBuildEvent = z.infer<typeof templateBuildEventSchema>;

/** `POST /v1/templates`: an organisation's own template, built from a Dockerfile (subset). */
export const createTemplateRequestSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "must be lowercase letters, digits, '.', '_' or '-' (max 63)"),
  description: z.string().max(1024).default(""),
  dockerfile: z
    .string()
    .min(1)
    .max(1024 * 1024)
    .describe("FROM <template or image>, then RUN, COPY/ADD, ENV, WORKDIR, USER, ENTRYPOINT, CMD"),
  context: z
    .string()
    .max(32 * 1024 * 1024)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")
    .optional()
    .describe("Build context for COPY: a tar or tar.gz archive, base64-encoded"),
  fromAuth: z
    .strictObject({ username: z.string().min(1), password: z.string().min(1) })
    .optional()
    .describe("Registry credentials when FROM names a private image; used for this build only"),
  resources: z
    .strictObject({
      vcpus: z.number().int().min(1).max(8).default(2),
      memoryMb: z.number().int().min(256).max(16_384).default(2048),
      diskMb: z.number().int().min(512).max(65_536).default(8192),
    })
    .prefault({})
    .describe("Size of the sandbox the RUN steps execute in"),
});
export type CreateTemplateRequest = z.input<typeof createTemplateRequestSchema>;
