import { envSchema, metadataSchema } from "@sandpit/contract";
import { z } from "zod";

const nonNegativeInt = z.number().int().min(0);

/**
 * `POST /sandbox` as the SDK sends it (`CreateSandbox`). Fields Sandpit cannot honour are accepted here
 * and refused with a "not supported" error naming them (see createRequestFrom); unknown fields are
 * ignored, as Daytona's API does.
 */
export const createSandboxSchema = z.object({
  name: z.string().min(1).max(255).optional(),
  snapshot: z.string().max(512).optional(),
  user: z.string().min(1).max(256).optional(),
  env: envSchema.optional(),
  labels: metadataSchema.optional(),
  public: z.boolean().optional(),
  networkBlockAll: z.boolean().optional(),
  networkAllowList: z.string().optional(),
  domainAllowList: z.string().optional(),
  outboundProxyUrl: z.string().optional(),
  otelEndpointOverride: z.string().optional(),
  target: z.string().optional(),
  cpu: z.number().int().min(1).max(8).optional(),
  gpu: nonNegativeInt.optional(),
  gpuType: z.array(z.string()).optional(),
  spot: z.boolean().optional(),
  memory: z.number().int().min(1).optional(),
  disk: z.number().int().min(1).optional(),
  autoStopInterval: nonNegativeInt.optional(),
  autoPauseInterval: nonNegativeInt.optional(),
  autoArchiveInterval: nonNegativeInt.optional(),
  autoDeleteInterval: z.number().int().min(-1).optional(),
  ttlMinutes: nonNegativeInt.optional(),
  volumes: z.array(z.unknown()).optional(),
  buildInfo: z
    .object({ dockerfileContent: z.string().max(1024 * 1024), contextHashes: z.array(z.string()).optional() })
    .optional(),
  linkedSandbox: z.string().optional(),
  secrets: z.array(z.unknown()).optional(),
  kvm: z.boolean().optional(),
});
export type DaytonaCreateSandbox = z.output<typeof createSandboxSchema>;

export const replaceLabelsSchema = z.object({ labels: metadataSchema });

/** `GET /sandbox` (the SDK's `list`): labels as a JSON object, states, a page size and an offset cursor. */
export const listQuerySchema = z.object({
  labels: z
    .string()
    .max(64 * 1024)
    .optional(),
  states: z.union([z.string(), z.array(z.string())]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().regex(/^\d+$/, "must be a cursor from a previous page").optional(),
  name: z.string().optional(),
  id: z.string().optional(),
});

export const portParamSchema = z.coerce.number().int().min(1).max(65_535);

// ---- toolbox ----

export const executeSchema = z.object({
  command: z
    .string()
    .min(1, "is required")
    .max(1024 * 1024),
  cwd: z.string().max(4096).optional(),
  envs: envSchema.optional(),
  /** Seconds; 0 or none: no limit (Sandpit's longest). */
  timeout: nonNegativeInt.optional(),
});

export const codeRunSchema = z.object({
  code: z.string().max(16 * 1024 * 1024),
  language: z.string().min(1),
  argv: z.array(z.string()).max(4096).optional(),
  envs: envSchema.optional(),
  timeout: nonNegativeInt.optional(),
});

export const pathQuerySchema = z.object({ path: z.string().min(1, "is required").max(4096) });
export const listFilesQuerySchema = pathQuerySchema.extend({
  depth: z.coerce.number().int().min(1).max(64).optional(),
});
export const createFolderQuerySchema = pathQuerySchema.extend({
  mode: z
    .string()
    .regex(/^[0-7]{3,4}$/, "must be octal digits like 755")
    .optional(),
});
export const deleteFileQuerySchema = pathQuerySchema.extend({ recursive: z.enum(["true", "false"]).optional() });
export const moveQuerySchema = z.object({
  source: z.string().min(1).max(4096),
  destination: z.string().min(1).max(4096),
});
export const bulkDownloadSchema = z.object({ paths: z.array(z.string().min(1).max(4096)).min(1).max(1000) });

export const createSessionSchema = z.object({
  sessionId: z
    .string()
    .min(1, "is required")
    .max(128)
    .regex(/^[A-Za-z0-9._-]+$/, "must be letters, digits, '.', '_' or '-'"),
});

export const sessionExecuteSchema = z.object({
  command: z
    .string()
    .min(1, "is required")
    .max(1024 * 1024),
  runAsync: z.boolean().optional(),
  async: z.boolean().optional(),
  suppressInputEcho: z.boolean().optional(),
});
