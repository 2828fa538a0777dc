import { z } from "zod";
import { timestampSchema } from "./common.js";
import { sandboxStatuses } from "./sandbox.js";

/**
 * A node's state in the cluster: `ready` takes new sandboxes; `draining` takes none (an operator drained
 * it); `lost` stopped renewing its lease and the cluster wrote its running sandboxes off (`node_lost`).
 */
export const nodeStates = ["ready", "draining", "lost"] as const;
export type NodeState = (typeof nodeStates)[number];

export const nodeCapacitySchema = z.object({
  vcpus: z.number().int(),
  memoryMb: z.number().int(),
  diskMb: z.number().int(),
  sandboxes: z.number().int().describe("Most sandboxes it holds at once (paused ones included)"),
});

export const nodeSchema = z.object({
  id: z.string(),
  url: z.string().describe("Internal address the other nodes forward requests to"),
  state: z.enum(nodeStates),
  epoch: z.number().int().describe("Grows each time the node registers; its writes carry it"),
  capacity: nodeCapacitySchema,
  load: z.object({
    sandboxes: z
      .partialRecord(z.enum(sandboxStatuses), z.number().int())
      .describe("Sandboxes on the node by status (destroyed ones not counted)"),
    vcpus: z.number().int().describe("vCPUs of its creating, running, pausing and resuming sandboxes"),
    memoryMb: z.number().int().describe("Memory of the same sandboxes"),
  }),
  labels: z.record(z.string(), z.string()),
  version: z.string(),
  startedAt: timestampSchema,
  heartbeatAt: timestampSchema.describe("Last renewal of its lease"),
  leaseExpiresAt: timestampSchema.describe("When its lease runs out unless renewed (the database's clock)"),
});
export type ClusterNode = z.infer<typeof nodeSchema>;

export const listNodesResponseSchema = z.object({ nodes: z.array(nodeSchema) });
