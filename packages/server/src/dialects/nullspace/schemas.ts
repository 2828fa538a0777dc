import { desktopSettingsSchema } from "@sandpit/contract";
import { z } from "zod";
import { isReservedPath, JSON_METADATA_KEY, normalizeCwd, VOLUME_ATTACHMENTS_KEY } from "./mapping.js";

/** Nullspace's warm-pool selector: `prefer` and `require` name a pool; `bypass` forces a cold create. */
export const warmPoolSelectorSchema = z
  .strictObject({
    mode: z.enum(["prefer", "require", "bypass"]).default("prefer"),
    id: z.string().min(1).max(64).optional(),
  })
  .superRefine((selector, ctx) => {
    if (selector.mode !== "bypass" && selector.id === undefined) {
      ctx.addIssue({ code: "custom", path: ["id"], message: `is required for mode ${selector.mode}` });
    }
  });

/** The parts of `network` Nullspace documents: whether exposed ports need the traffic access token. */
export const networkSchema = z.strictObject({
  allow_public_traffic: z.boolean().default(true),
});

/** `lifecycle.on_timeout: pause` is the long form of `timeout_action: hibernate`. */
export const lifecycleSchema = z.strictObject({
  on_timeout: z.enum(["destroy", "pause"]).optional(),
});

/**
 * A create-time shared-volume mount: `ref` is a volume name or id of the caller's organisation,
 * `subpath` a directory inside the volume (volume-internal, rooted at `/`).
 */
export const volumeMountSchema = z.strictObject({
  ref: z.string().min(1).max(128),
  mount_path: z
    .string()
    .min(1)
    .refine((p) => !isReservedPath(p), "must not be under the reserved /workspace/.nullspace"),
  subpath: z.string().min(1).max(4096).nullable().optional(),
  read_only: z.boolean().default(false),
});
export type NullspaceVolumeMount = z.output<typeof volumeMountSchema>;

/** The template of a create request that names none: `desktop` when it asks for a desktop. */
const DEFAULT_TEMPLATE = "base";
const DEFAULT_DESKTOP_TEMPLATE = "desktop";

/** `POST /v1/sandboxes`, as Nullspace documents it. */
export const createSandboxSchema = z
  .strictObject({
    snapshot_id: z.string().min(1).max(128).optional(),
    warm_pool: warmPoolSelectorSchema.optional(),
    template: z.string().min(1).max(1024).optional(),
    vcpus: z.number().int().min(1).default(1),
    memory_mb: z.number().int().min(1).default(256),
    disk_mb: z.number().int().min(512).max(131_072).optional(),
    timeout_ms: z.number().int().default(300_000),
    timeout_action: z.enum(["destroy", "hibernate"]).optional(),
    auto_resume: z.boolean().default(false),
    envs: z.record(z.string(), z.string()).default({}),
    metadata: z.record(z.string(), z.json()).default({}),
    internet_access: z.boolean().default(true),
    cwd: z
      .string()
      .nullable()
      .optional()
      .transform((raw, ctx) => {
        if (raw === null || raw === undefined) return undefined;
        const result = normalizeCwd(raw);
        if ("error" in result) {
          ctx.addIssue({ code: "custom", message: result.error });
          return z.NEVER;
        }
        return result.path;
      }),
    // Sandpit's own desktop settings ({width, height, dpi}, the same names in snake_case); null is none.
    desktop: desktopSettingsSchema
      .nullable()
      .optional()
      .transform((d) => d ?? undefined),
    network: networkSchema.optional(),
    volumes: z.array(volumeMountSchema).max(8).nullable().optional(),
    lifecycle: lifecycleSchema.optional(),
  })
  .superRefine((body, ctx) => {
    for (const reserved of [JSON_METADATA_KEY, VOLUME_ATTACHMENTS_KEY]) {
      if (reserved in body.metadata) {
        ctx.addIssue({ code: "custom", path: ["metadata", reserved], message: "is a reserved key" });
      }
    }
    if (body.snapshot_id !== undefined && body.disk_mb !== undefined) {
      ctx.addIssue({ code: "custom", path: ["disk_mb"], message: "is not permitted with snapshot_id" });
    }
    const onTimeout = body.lifecycle?.on_timeout;
    if (body.timeout_action && onTimeout) {
      const same = (body.timeout_action === "hibernate") === (onTimeout === "pause");
      if (!same) {
        ctx.addIssue({
          code: "custom",
          path: ["lifecycle", "on_timeout"],
          message: `contradicts timeout_action: ${body.timeout_action}`,
        });
      }
    }
    if (body.auto_resume && body.timeout_action !== "hibernate" && onTimeout !== "pause") {
      ctx.addIssue({
        code: "custom",
        path: ["auto_resume"],
        message: "requires timeout_action: hibernate or lifecycle.on_timeout: pause",
      });
    }
  })
  .transform((body) => ({
    ...body,
    template: body.template ?? (body.desktop ? DEFAULT_DESKTOP_TEMPLATE : DEFAULT_TEMPLATE),
  }));
export type NullspaceCreateSandbox = z.output<typeof createSandboxSchema>;

export const sandboxStatusSchema = z.enum(["creating", "running", "paused", "destroyed", "error"]);
export type NullspaceStatus = z.infer<typeof sandboxStatusSchema>;

/** Where a sandbox's mount of a volume is, in Nullspace's attachment states. */
export type VolumeAttachmentState =
  | "mounting"
  | "mounted"
  | "paused"
  | "remounting"
  | "releasing"
  | "released"
  | "failed";

/** One entry of `metadata.volume_attachments`. */
export type NullspaceVolumeAttachment = {
  id: string;
  volume_id?: string;
  volume_name?: string;
  /** A host directory an admin allows (mounted through Sandpit's own API). */
  host_path?: string;
  mount_path: string;
  subpath: string;
  read_only: boolean;
  state: VolumeAttachmentState;
};

/** The sandbox Nullspace answers with; optional fields are omitted rather than null. */
export const sandboxSchema = z.object({
  id: z.string(),
  status: sandboxStatusSchema,
  config: z.object({ vcpus: z.number().int(), memory_mb: z.number().int(), disk_mb: z.number().int() }),
  template: z.string(),
  created_at: z.string(),
  metadata: z.record(z.string(), z.json()).optional(),
  started_at: z.string().optional(),
  timeout_ms: z.number().int().optional(),
  timeout_at: z.string().optional(),
  expires_at: z.string().optional(),
  timeout_action: z.enum(["destroy", "hibernate"]).optional(),
  cwd: z.string().optional(),
  desktop: z.object({ width: z.number().int(), height: z.number().int(), dpi: z.number().int() }).optional(),
  traffic_access_token: z.string().optional(),
  warm_pool_checkout: z.object({ hit: z.boolean(), id: z.string() }).optional(),
});
export type NullspaceSandbox = z.infer<typeof sandboxSchema>;

/** Nullspace's error body. */
export interface NullspaceErrorBody {
  error: {
    code: string;
    message: string;
    status: number;
    request_id: string;
    fields?: { field: string; message: string }[];
  };
}
