import { z } from "zod";
import { hasNoNul, noNul, timestampSchema } from "./common.js";

export const volumeLimits = {
  sizeMb: { min: 64, max: 65_536, default: 1024 },
  /** Volumes one sandbox may mount. */
  perSandbox: 16,
} as const;

/** Volume names are DNS labels: lowercase letters, digits and '-', 1-63 characters, no '-' at either end. */
export const volumeNameSchema = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    "must be a DNS label: lowercase letters, digits and '-', 1-63 characters, starting and ending with a letter or digit",
  );

export const createVolumeRequestSchema = z.strictObject({
  name: volumeNameSchema,
  sizeMb: z
    .number()
    .int()
    .min(volumeLimits.sizeMb.min)
    .max(volumeLimits.sizeMb.max)
    .default(volumeLimits.sizeMb.default)
    .describe("Capacity; writes beyond it fail with ENOSPC inside the sandboxes"),
});
export type CreateVolumeRequest = z.input<typeof createVolumeRequestSchema>;

export const volumeSchema = z.object({
  id: z.string(),
  name: z.string(),
  sizeMb: z.number().int(),
  usedBytes: z.number().int().nullable().describe("Space the volume's files take (null when unknown)"),
  /** Non-destroyed sandboxes that mount the volume. */
  mountedBy: z.array(z.string()),
  createdAt: timestampSchema,
});
export type Volume = z.infer<typeof volumeSchema>;
export const listVolumesResponseSchema = z.object({ volumes: z.array(volumeSchema) });

/** Paths a volume may not be mounted on: the root, the kernel's pseudo filesystems, Sandpit's agent. */
const RESERVED_MOUNT_PATHS = ["/proc", "/sys", "/dev", "/.sandpit"];

export const mountPathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith("/"), "must be an absolute path")
  .refine(hasNoNul, noNul)
  .refine(
    (p) =>
      p === "/" ||
      p
        .split("/")
        .slice(1)
        .every((c) => c !== "" && c !== "." && c !== ".."),
    "must be a normalized path (no '.', '..', '//' or trailing '/')",
  )
  .refine((p) => p !== "/", "must not be /")
  .refine(
    (p) => !RESERVED_MOUNT_PATHS.some((r) => p === r || p.startsWith(`${r}/`)),
    `must not be or be under ${RESERVED_MOUNT_PATHS.join(", ")}`,
  )
  .describe("Absolute path inside the sandbox");

const subPathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.startsWith("/"), "must be a relative path")
  .refine(hasNoNul, noNul)
  .refine((p) => p.split("/").every((c) => c !== ".."), "must not contain '..'")
  .describe("Directory inside the volume to mount instead of its root; created when missing");

/**
 * One mount of a new sandbox: a named volume of the organisation (`name`, optionally a `subPath` inside
 * it) or a directory of the host (`hostPath`, only under the prefixes an admin allows with
 * SANDPIT_HOST_VOLUME_PATHS). One object rather than a union, so that errors name the exact field.
 */
export const volumeMountSchema = z
  .strictObject({
    name: volumeNameSchema.optional().describe("A volume of your organisation"),
    hostPath: z
      .string()
      .min(1)
      .max(4096)
      .refine((p) => p.startsWith("/"), "must be an absolute path")
      .refine(hasNoNul, noNul)
      .optional()
      .describe("An existing directory on the server's host (admin-allowed prefixes only)"),
    mountPath: mountPathSchema,
    readOnly: z.boolean().default(false).describe("Writes fail with EROFS inside the sandbox"),
    subPath: subPathSchema.optional(),
  })
  .superRefine((m, ctx) => {
    if ((m.name === undefined) === (m.hostPath === undefined)) {
      ctx.addIssue({ code: "custom", path: ["name"], message: "exactly one of name and hostPath is required" });
    }
    if (m.hostPath !== undefined && m.subPath !== undefined) {
      ctx.addIssue({ code: "custom", path: ["subPath"], message: "only for named volumes (put it in hostPath)" });
    }
  });
export type VolumeMount = z.output<typeof volumeMountSchema>;

export const volumeMountsSchema = z
  .array(volumeMountSchema)
  .max(volumeLimits.perSandbox)
  .refine((mounts) => new Set(mounts.map((m) => m.mountPath)).size === mounts.length, "must not repeat a mountPath")
  .default([])
  .describe("Volumes to mount: {name, mountPath, readOnly?, subPath?} or {hostPath, mountPath, readOnly?}");

/** A sandbox's mount as the API shows it. */
export const sandboxVolumeSchema = z.object({
  name: z.string().optional(),
  hostPath: z.string().optional(),
  mountPath: z.string(),
  readOnly: z.boolean(),
  subPath: z.string().optional(),
});
