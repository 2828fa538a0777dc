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
  description: z.string(),
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
