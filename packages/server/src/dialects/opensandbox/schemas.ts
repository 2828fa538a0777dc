import { commandArgSchema, MAX_UID, metadataPatchSchema } from "@sandpit/contract";
import { z } from "zod";

/**
 * OpenSandbox's request shapes (lifecycle API, execd, egress sidecar) as its OpenAPI documents describe
 * them. Fields Sandpit cannot honour are still parsed here, so that the dialect can refuse them by name.
 */

/** Keys under this prefix are OpenSandbox's own; users may not set them (Sandpit keeps its notes there). */
export const RESERVED_METADATA_PREFIX = "opensandbox.io/";

const stringMap = z.record(z.string(), z.string());

export const imageSpecSchema = z.strictObject({
  uri: z.string().min(1, "must not be empty"),
  auth: z.strictObject({ username: z.string(), password: z.string() }).optional(),
});

export const networkRuleSchema = z.strictObject({
  action: z.enum(["allow", "deny"]),
  target: z.string().min(1, "must not be empty"),
});
export type NetworkRule = z.infer<typeof networkRuleSchema>;

export const networkPolicySchema = z.strictObject({
  defaultAction: z.enum(["allow", "deny"]).optional(),
  egress: z.array(networkRuleSchema).optional(),
});
export type OpenSandboxNetworkPolicy = z.infer<typeof networkPolicySchema>;

export const volumeSchema = z.object({
  name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS label"),
  mountPath: z.string().regex(/^\//, "must be an absolute path"),
  readOnly: z.boolean().optional(),
  subPath: z.string().optional(),
  host: z.object({ path: z.string() }).optional(),
  pvc: z.object({ claimName: z.string() }).passthrough().optional(),
  ossfs: z.record(z.string(), z.unknown()).optional(),
});
export type OpenSandboxVolume = z.infer<typeof volumeSchema>;

/** `POST /v1/sandboxes`. */
export const createSandboxSchema = z
  .object({
    image: imageSpecSchema.optional(),
    snapshotId: z.string().min(1).optional(),
    platform: z.strictObject({ os: z.enum(["linux", "windows"]), arch: z.enum(["amd64", "arm64"]) }).optional(),
    timeout: z.number().int().min(60).max(86_400).nullable().optional(),
    resourceLimits: stringMap.optional(),
    resourceRequests: stringMap.optional(),
    env: stringMap.optional(),
    metadata: stringMap.optional(),
    entrypoint: z.array(z.string()).min(1, "must name the program to run").optional(),
    networkPolicy: networkPolicySchema.nullable().optional(),
    credentialProxy: z.strictObject({ enabled: z.boolean().optional() }).optional(),
    secureAccess: z.boolean().optional(),
    volumes: z.array(volumeSchema).optional(),
    extensions: stringMap.optional(),
  })
  .superRefine((body, ctx) => {
    if ((body.image === undefined) === (body.snapshotId === undefined)) {
      ctx.addIssue({ code: "custom", path: ["image"], message: "exactly one of image and snapshotId is required" });
    }
    if (body.image && !body.entrypoint) {
      ctx.addIssue({ code: "custom", path: ["entrypoint"], message: "is required when image is given" });
    }
    for (const key of Object.keys(body.metadata ?? {})) {
      if (key.startsWith(RESERVED_METADATA_PREFIX)) {
        ctx.addIssue({
          code: "custom",
          path: ["metadata", key],
          message: `the ${RESERVED_METADATA_PREFIX} prefix is reserved`,
        });
      }
    }
  });
export type OpenSandboxCreateSandbox = z.infer<typeof createSandboxSchema>;

/**
 * `PATCH /v1/sandboxes/{id}/metadata`: a JSON merge patch (RFC 7396) that is the metadata object itself,
 * with Sandpit's limits on keys and values. Kubernetes' label syntax is not required: nothing here is a label.
 */
export const patchMetadataSchema = metadataPatchSchema.superRefine((patch, ctx) => {
  for (const key of Object.keys(patch)) {
    if (key.startsWith(RESERVED_METADATA_PREFIX)) {
      ctx.addIssue({ code: "custom", path: [key], message: `the ${RESERVED_METADATA_PREFIX} prefix is reserved` });
    }
  }
});

export const renewExpirationSchema = z.strictObject({
  expiresAt: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "must be an RFC 3339 date-time"),
});

export const createSnapshotSchema = z.strictObject({ name: z.string().min(1).optional() });

const states = z
  .union([z.string(), z.array(z.string())])
  .optional()
  .transform((s) => (s === undefined ? [] : Array.isArray(s) ? s : [s]));

export const listSandboxesQuerySchema = z.object({
  state: states,
  metadata: z.string().optional(),
  page: z.coerce.number().int().min(1).default(1),
  pageSize: z.coerce.number().int().min(1).max(1000).default(20),
});

export const listSnapshotsQuerySchema = z.object({
  sandboxId: z.string().optional(),
  name: z.string().optional(),
  state: states,
  page: z.coerce.number().int().min(1).default(1),
  pageSize: z.coerce.number().int().min(1).max(1000).default(20),
});

export const endpointQuerySchema = z.object({
  use_server_proxy: z.enum(["true", "false"]).optional(),
  expires: z
    .string()
    .regex(/^(0|[1-9][0-9]*)$/, "must be Unix epoch seconds")
    .optional(),
});

// ---- execd ----

/** `POST /command`. */
export const runCommandSchema = z
  .object({
    command: commandArgSchema.refine((c) => c.trim() !== "", "must not be empty"),
    cwd: z.string().optional(),
    background: z.boolean().optional(),
    timeout: z.number().int().min(0).optional(),
    uid: z.number().int().min(0).max(MAX_UID).optional(),
    gid: z.number().int().min(0).max(MAX_UID).optional(),
    envs: stringMap.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.gid !== undefined && body.uid === undefined) {
      ctx.addIssue({ code: "custom", path: ["uid"], message: "is required when gid is given" });
    }
  });
export type RunCommand = z.infer<typeof runCommandSchema>;

/** A mode as execd writes it: octal digits read as a decimal number (755 means rwxr-xr-x). */
const octalModeSchema = z
  .number()
  .int()
  .min(0)
  .max(7777)
  .refine((m) => /^[0-7]+$/.test(String(m)), "must be octal digits such as 644 or 755");

export const permissionSchema = z.object({
  owner: z.string().min(1).optional(),
  group: z.string().min(1).optional(),
  mode: octalModeSchema.optional(),
});
export type Permission = z.infer<typeof permissionSchema>;

export const permissionsByPathSchema = z.record(z.string().min(1), permissionSchema);

/** The metadata part of an upload. */
export const fileMetadataSchema = permissionSchema.extend({ path: z.string().min(1, "must not be empty") });

export const moveFilesSchema = z.array(z.strictObject({ src: z.string().min(1), dest: z.string().min(1) })).min(1);

export const replaceContentsSchema = z.record(
  z.string().min(1),
  z.object({ old: z.string().min(1, "must not be empty"), new: z.string() }),
);

const paths = z
  .union([z.string(), z.array(z.string())])
  .transform((p) => (Array.isArray(p) ? p : [p]))
  .pipe(z.array(z.string().min(1, "must not be empty")).min(1, "at least one path is required"));

export const pathsQuerySchema = z.object({ path: paths });

export const listDirectoryQuerySchema = z.object({
  path: z.string().min(1, "must not be empty"),
  depth: z.coerce.number().int().min(0).max(64).default(1),
});

export const searchQuerySchema = z.object({
  path: z.string().min(1, "must not be empty"),
  pattern: z.string().min(1).default("**"),
});

export const downloadQuerySchema = z.object({
  path: z.string().min(1, "must not be empty"),
  offset: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(0).optional(),
});

export const logsQuerySchema = z.object({ cursor: z.coerce.number().int().min(0).optional() });

export const interruptQuerySchema = z.object({ id: z.string().min(1, "must not be empty") });

export const replaceQuerySchema = z.object({ verbose: z.enum(["true", "false"]).optional() });

// ---- execd code contexts and bash sessions ----

const nonBlank = z.string().refine((s) => s.trim() !== "", "must not be empty");

/** `POST /code/context` (execd also takes the context's working directory). */
export const createCodeContextSchema = z.object({
  language: z.string().min(1, "must not be empty").default("python"),
  cwd: z.string().min(1, "must not be empty").optional(),
});

/** `POST /code`: without a context language, the code is a stateless shell command. */
export const runCodeSchema = z.object({
  code: nonBlank,
  context: z.object({ id: z.string().optional(), language: z.string().optional() }).optional(),
});
export type ExecdRunCode = z.infer<typeof runCodeSchema>;

export const contextsQuerySchema = z.object({ language: z.string().min(1, "must not be empty").optional() });
export const deleteContextsQuerySchema = z.object({ language: z.string().min(1, "must not be empty") });

/** `POST /session` (the body may be empty). */
export const createSessionSchema = z.object({ cwd: z.string().min(1, "must not be empty").optional() });

/** `POST /session/{sessionId}/run`. */
export const runInSessionSchema = z.object({
  command: nonBlank,
  cwd: z.string().min(1, "must not be empty").optional(),
  timeout: z.number().int().min(0).optional(),
});
export type RunInSession = z.infer<typeof runInSessionSchema>;

// ---- egress sidecar ----

export const patchRulesSchema = z.array(networkRuleSchema);
export const deleteRulesSchema = z.array(z.string().min(1));
