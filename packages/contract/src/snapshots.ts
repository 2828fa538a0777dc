import { z } from "zod";
import { timestampSchema } from "./common.js";

export const createSnapshotRequestSchema = z.strictObject({
  name: z.string().min(1).max(128).optional(),
  includeMemory: z.literal(true).default(true).describe("Snapshots always hold memory and processes"),
});

export const snapshotSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  sourceSandboxId: z.string(),
  status: z.enum(["creating", "ready", "failed"]),
  template: z.string(),
  resources: z.object({ vcpus: z.number().int(), memoryMb: z.number().int(), diskMb: z.number().int() }),
  sizeBytes: z.number().int().nullable(),
  createdAt: timestampSchema,
});
export type Snapshot = z.infer<typeof snapshotSchema>;
export const listSnapshotsResponseSchema = z.object({ snapshots: z.array(snapshotSchema) });

export const forkRequestSchema = z.strictObject({
  count: z.number().int().min(1).max(16).default(1),
});
