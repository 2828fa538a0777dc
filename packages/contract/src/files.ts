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
