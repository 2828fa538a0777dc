import { z } from "zod";

const quotaLimit = z.number().int().min(0).nullable();

/** An organisation's own limits, set by an operator; null: the server's default. */
export const orgQuotaSchema = z.strictObject({
  maxSandboxes: quotaLimit.describe("Sandboxes at once (paused ones count); null: the server default"),
  maxVcpus: quotaLimit.describe("Sum of vcpus of the organisation's sandboxes"),
  maxMemoryMb: quotaLimit.describe("Sum of memoryMb of the organisation's sandboxes"),
});
export type OrgQuota = z.infer<typeof orgQuotaSchema>;

export const orgQuotaResponseSchema = z.object({
  org: z.string(),
  own: orgQuotaSchema,
  effective: orgQuotaSchema.describe("What is enforced: the organisation's own limits over the server's defaults"),
});
export type OrgQuotaResponse = z.infer<typeof orgQuotaResponseSchema>;

/** Body of `PUT /v1/admin/warm-pools/{id}`. */
export const putWarmPoolRequestSchema = z.strictObject({
  template: z.string().min(1),
  size: z.number().int().min(0).max(64),
  resources: z
    .strictObject({
      vcpus: z.number().int().min(1).max(8).default(1),
      memoryMb: z.number().int().min(256).max(16_384).default(1024),
      diskMb: z.number().int().min(512).max(65_536).default(4096),
    })
    .prefault({}),
});
export type PutWarmPoolRequest = z.input<typeof putWarmPoolRequestSchema>;

export const warmPoolSchema = z.object({
  id: z.string(),
  template: z.string(),
  size: z.number().int(),
  vcpus: z.number().int(),
  memoryMb: z.number().int(),
  diskMb: z.number().int(),
});
export type WarmPool = z.infer<typeof warmPoolSchema>;

export const listWarmPoolsResponseSchema = z.object({
  pools: z.array(warmPoolSchema.extend({ ready: z.number().int().describe("Ready sandboxes in the pool now") })),
});
export type WarmPoolStatus = z.infer<typeof listWarmPoolsResponseSchema>["pools"][number];
