import { z } from "zod";
import { absolutePathSchema, timestampSchema } from "./common.js";

export const filePathQuerySchema = z.object({ path: absolutePathSchema });
export const writeFileQuerySchema = z.object({
  path: absolutePathSchema,
  mode: z
    .string()
    .regex(/^[0-7]{3,4}$/, "must be an octal file mode such as 644 or 0755")
    .optional(),
});
export const removeFileQuerySchema = z.object({
  path: absolutePathSchema,
  recursive: z.enum(["true", "false"]).optional(),
});
export const mkdirRequestSchema = z.strictObject({
  path: absolutePathSchema,
  parents: z.boolean().default(true),
  mode: z
    .string()
    .regex(/^[0-7]{3,4}$/, "must be an octal file mode such as 755")
    .optional(),
});

export const fileEntrySchema = z.object({
  name: z.string(),
  path: z.string(),
  type: z.enum(["file", "dir", "symlink", "other"]),
  size: z.number().int(),
  mode: z.string().describe("Permission bits in octal, e.g. 0644"),
  mtime: timestampSchema,
  target: z.string().optional().describe("Target of a symlink"),
});
export type FileEntry = z.infer<typeof fileEntrySchema>;
export const listFilesResponseSchema = z.object({ path: z.string(), entries: z.array(fileEntrySchema) });
export const writeFileResponseSchema = z.object({ path: z.string(), size: z.number().int() });

export const watchFilesQuerySchema = z.object({
  path: absolutePathSchema.describe("A directory"),
  recursive: z.enum(["true", "false"]).default("false").describe("Also every directory below it"),
});

/** One NDJSON line of `GET /v1/sandboxes/{id}/files/watch`; `ready` comes first, once watching. */
export const fileWatchEventSchema = z.object({
  type: z.enum(["ready", "create", "modify", "delete", "rename", "chmod", "overflow"]),
  path: z.string(),
  from: z.string().optional().describe("rename: the old path"),
  isDir: z.boolean().optional(),
});
export type FileWatchEvent = z.infer<typeof fileWatchEventSchema>;
