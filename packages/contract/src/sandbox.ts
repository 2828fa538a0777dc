import { z } from "zod";
import {
  absolutePathSchema,
  commandArgSchema,
  envSchema,
  MAX_METADATA_ENTRIES,
  metadataKeySchema,
  metadataSchema,
  metadataValueSchema,
  sandboxIdSchema,
  sandboxUserSchema,
  timestampSchema,
} from "./common.js";
import { desktopSettingsSchema } from "./desktop.js";
import { networkPolicySchema, portSchema } from "./network.js";
import { sandboxVolumeSchema, volumeMountsSchema } from "./volumes.js";

export const sandboxStatuses = [
  "creating",
  "running",
  "pausing",
  "paused",
  "resuming",
  "destroying",
  "destroyed",
  "error",
] as const;
export const sandboxStatusSchema = z.enum(sandboxStatuses);
export type SandboxStatus = z.infer<typeof sandboxStatusSchema>;

/**
 * Why a sandbox is in `error`: `oom` (memory limit), `crashed` (the sandbox process died), `pause_failed` (it
 * died while being paused: its checkpoint failed), `start_failed`, `lost`.
 */
export const sandboxErrorReasons = ["oom", "crashed", "pause_failed", "start_failed", "lost"] as const;

export const limits = {
  vcpus: { min: 1, max: 8, default: 1 },
  memoryMb: { min: 256, max: 16_384, step: 256, default: 1024 },
  diskMb: { min: 512, max: 65_536, default: 4096 },
  timeoutMs: { min: 1_000, max: 24 * 3600 * 1000, default: 5 * 60 * 1000 },
  execTimeoutMs: { max: 24 * 3600 * 1000 },
} as const;

export const resourcesSchema = z.object({
  vcpus: z.number().int().min(limits.vcpus.min).max(limits.vcpus.max).default(limits.vcpus.default),
  memoryMb: z
    .number()
    .int()
    .min(limits.memoryMb.min)
    .max(limits.memoryMb.max)
    .refine((m) => m % limits.memoryMb.step === 0, `must be a multiple of ${limits.memoryMb.step}`)
    .default(limits.memoryMb.default),
  diskMb: z.number().int().min(limits.diskMb.min).max(limits.diskMb.max).default(limits.diskMb.default),
});
export type Resources = z.infer<typeof resourcesSchema>;

export const templateNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, "must be lowercase letters, digits, '.', '_' or '-' (max 63)");

/** Named runtimes (Vercel's `runtime`), each a built-in template of the same name. */
export const runtimePresets = ["python3.13", "node22", "node24"] as const;

export const imageRefSchema = z.strictObject({
  uri: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[^\s]+$/, "must be an image reference like registry.example/team/app:tag")
    .describe("Image reference: [registry/]repository[:tag][@digest]"),
  auth: z
    .strictObject({ username: z.string().min(1).max(1024), password: z.string().min(1).max(16_384) })
    .optional()
    .describe("Registry credentials; used for this pull only, never stored"),
});
export type ImageRef = z.infer<typeof imageRefSchema>;

const httpUrlSchema = z
  .string()
  .max(4096)
  .refine((u) => /^https?:\/\/[^\s]+$/.test(u), "must be an http(s) URL");

/** What lands in the sandbox's working directory before create returns. */
export const sourceSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("git"),
    url: httpUrlSchema,
    ref: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[^\s-][^\s]*$/, "must be a branch, tag or commit")
      .optional(),
    depth: z.number().int().min(1).max(1_000_000).optional(),
    username: z.string().max(1024).optional(),
    password: z.string().max(16_384).optional().describe("Token or password; used for this clone only"),
  }),
  z.strictObject({ type: z.literal("tarball"), url: httpUrlSchema }),
  z.strictObject({
    type: z.literal("snapshot"),
    snapshotId: z.string().regex(/^snp_[a-z2-7]{20}$/, "must be a snapshot id"),
  }),
]);
export type SandboxSource = z.infer<typeof sourceSchema>;

/** A node's id (`SANDPIT_NODE_ID`). */
export const nodeIdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]{0,62}$/, "must be a node id: 1-63 lowercase letters, digits, '.' or '-'");

const MAX_PLACEMENT_LABELS = 16;

/** Where a sandbox may be placed in a cluster (default: any ready node with room). */
export const placementSchema = z.strictObject({
  node: nodeIdSchema.optional().describe("Only this node"),
  labels: z
    .record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, "must be 1-63 letters, digits, '.', '_', '/' or '-'"),
      z.string().regex(/^[A-Za-z0-9._-]{0,63}$/, "must be at most 63 letters, digits, '.', '_' or '-'"),
    )
    .refine((l) => Object.keys(l).length <= MAX_PLACEMENT_LABELS, `at most ${MAX_PLACEMENT_LABELS} labels`)
    .optional()
    .describe("Only nodes with every one of these labels (SANDPIT_NODE_LABELS)"),
});
export type Placement = z.infer<typeof placementSchema>;

export const createSandboxRequestSchema = z.strictObject({
  template: templateNameSchema.default("base"),
  runtime: z.enum(runtimePresets).optional().describe("Shorthand for template: the runtime preset of that name"),
  image: imageRefSchema.optional().describe("Start from a container image instead of a template"),
  source: sourceSchema
    .optional()
    .describe("Content for the working directory: a git repository, a tarball or a snapshot"),
  entrypoint: z
    .array(commandArgSchema)
    .max(4096)
    .optional()
    .describe("Main process, started in the background at create; default the image's Entrypoint + Cmd; [] for none"),
  user: sandboxUserSchema.optional().describe("Default user of commands; default the image's User, else root"),
  resources: resourcesSchema.prefault({}),
  timeoutMs: z.number().int().min(limits.timeoutMs.min).max(limits.timeoutMs.max).default(limits.timeoutMs.default),
  env: envSchema.default({}),
  metadata: metadataSchema.default({}),
  cwd: absolutePathSchema.optional().describe("Working directory; default the image's WorkingDir, else /workspace"),
  networkPolicy: networkPolicySchema.optional().describe("Egress policy; default allow-all"),
  internetAccess: z.boolean().optional().describe("false is a shorthand for networkPolicy {mode: deny-all}"),
  timeoutAction: z.enum(["destroy", "pause"]).default("destroy").describe("What expiry does"),
  lifecycle: z
    .enum(["ephemeral", "persistent"])
    .default("ephemeral")
    .describe("persistent: no expiry; pauses after idleTimeoutMs without API activity"),
  idleTimeoutMs: z
    .number()
    .int()
    .min(limits.timeoutMs.min)
    .max(limits.timeoutMs.max)
    .optional()
    .describe("persistent only; default 10 minutes"),
  autoResume: z.boolean().default(false).describe("exec, file calls and port traffic resume a paused sandbox"),
  hibernate: z
    .boolean()
    .default(true)
    .describe(
      "Idle for the server's quiet period (no API activity): paused, status paused with reason hibernated, and resumed by its next call; false keeps it running (background work)",
    ),
  warmPool: z
    .strictObject({
      mode: z.enum(["prefer", "require", "bypass"]),
      poolId: z.string().min(1).max(64).optional(),
    })
    .optional()
    .describe("Take a ready sandbox from a warm pool (default: prefer a pool matching template and resources)"),
  snapshotId: z
    .string()
    .regex(/^snp_[a-z2-7]{20}$/, "must be a snapshot id")
    .optional()
    .describe("Start from a snapshot: its processes, memory, files, resources, env and policy"),
  ports: z
    .array(portSchema)
    .max(64)
    .refine((p) => new Set(p).size === p.length, "must not repeat a port")
    .default([])
    .describe("Ports to expose through Sandpit's proxy"),
  publicPorts: z.boolean().default(false).describe("Exposed ports need no traffic token"),
  allPorts: z.boolean().default(false).describe("Every port of the sandbox is exposed, not only `ports`"),
  volumes: volumeMountsSchema,
  desktop: desktopSettingsSchema
    .optional()
    .describe(
      "A virtual display of this size with a desktop, started with the sandbox (the desktop template has one by " +
        "default; other templates need X, Xfce and python3-xlib/pil)",
    ),
  placement: placementSchema
    .optional()
    .describe("Where in the cluster the sandbox may run: a node, or nodes with these labels"),
});
export type CreateSandboxRequest = z.input<typeof createSandboxRequestSchema>;
export type CreateSandboxParams = z.output<typeof createSandboxRequestSchema>;

export const sandboxSchema = z.object({
  id: sandboxIdSchema,
  status: sandboxStatusSchema,
  reason: z.string().nullable().describe("Why the sandbox is in `error` (oom, crashed, ...) or was destroyed"),
  node: z.string().describe("The node of the cluster the sandbox lives on"),
  template: z.string().describe("Template name, or `image:<uri>` for a sandbox made from an image"),
  user: z.string().nullable().describe("Default user of commands (null: root)"),
  mainCommandId: z.string().nullable().describe("The command started from the entrypoint at create"),
  resources: z.object({ vcpus: z.number().int(), memoryMb: z.number().int(), diskMb: z.number().int() }),
  envKeys: z.array(z.string()).describe("Names of the sandbox's environment variables; values are never returned"),
  metadata: z.record(z.string(), z.string()),
  cwd: z.string(),
  networkPolicy: networkPolicySchema,
  timeoutAction: z.enum(["destroy", "pause"]),
  lifecycle: z.enum(["ephemeral", "persistent"]),
  idleTimeoutMs: z.number().int().nullable(),
  autoResume: z.boolean(),
  hibernate: z.boolean().describe("Hibernated when idle (see the create request)"),
  ports: z.array(z.number().int()),
  allPorts: z.boolean(),
  publicPorts: z.boolean(),
  trafficToken: z.string().describe("Send as X-Sandpit-Traffic-Token (or ?sandpit_token=) to reach exposed ports"),
  volumes: z.array(sandboxVolumeSchema).describe("Volumes mounted into the sandbox"),
  desktop: desktopSettingsSchema.nullable().describe("The sandbox's desktop (null: none)"),
  warmPoolCheckout: z
    .object({ hit: z.boolean(), poolId: z.string().nullable() })
    .optional()
    .describe("In the create response: whether a warm pool served it"),
  createdAt: timestampSchema,
  startedAt: timestampSchema.nullable(),
  expiresAt: timestampSchema.nullable(),
  destroyedAt: timestampSchema.nullable(),
});
export type Sandbox = z.infer<typeof sandboxSchema>;

export const listSandboxesQuerySchema = z.object({
  status: z
    .union([sandboxStatusSchema, z.string().regex(/^[a-z]+(,[a-z]+)+$/)])
    .optional()
    .describe("One status or a comma-separated list"),
  includeDestroyed: z.enum(["true", "false"]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const listSandboxesResponseSchema = z.object({ sandboxes: z.array(sandboxSchema) });

export const setTimeoutRequestSchema = z.strictObject({
  timeoutMs: z.number().int().min(limits.timeoutMs.min).max(limits.timeoutMs.max),
});

/** A merge patch of a sandbox's metadata: a string sets the key, null removes it, absent keys stay. */
export const metadataPatchSchema = z
  .record(metadataKeySchema, metadataValueSchema.nullable())
  .refine((m) => Object.keys(m).length <= MAX_METADATA_ENTRIES, `at most ${MAX_METADATA_ENTRIES} entries`);
export type MetadataPatch = z.infer<typeof metadataPatchSchema>;

/** `PATCH /v1/sandboxes/{id}`: the properties that can change after create. */
export const updateSandboxRequestSchema = z
  .strictObject({
    metadata: metadataPatchSchema
      .optional()
      .describe("Merged into the metadata: a string sets the key, null removes it, absent keys stay"),
  })
  .refine((body) => Object.keys(body).length > 0, {
    path: ["metadata"],
    message: "at least one field is required (metadata)",
  });
export type UpdateSandboxRequest = z.infer<typeof updateSandboxRequestSchema>;
