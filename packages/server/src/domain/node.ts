import type { SandboxStatus } from "@sandpit/contract";

/** What a node offers to sandboxes: placement compares requests against it (with the overcommit). */
export interface NodeCapacity {
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  /** Most sandboxes it holds at once (live ones: creating, running, pausing, resuming, paused). */
  sandboxes: number;
}

/**
 * One `sandpit serve` of the cluster. It holds a lease that it renews; `epoch` grows each time it
 * (re-)registers, and its writes about sandboxes carry it, so that a node that was declared lost and
 * comes back cannot overwrite what happened meanwhile.
 */
export interface NodeRecord {
  id: string;
  /** Internal URL the other nodes forward requests to. */
  url: string;
  state: "ready" | "draining" | "lost";
  epoch: number;
  /** The lease runs out at this time (the database's clock), ms. */
  leaseExpiresAt: number;
  capacity: NodeCapacity;
  labels: Record<string, string>;
  version: string;
  startedAt: number;
  heartbeatAt: number;
}

/** Where a sandbox lives, for forwarding requests to it. */
export interface SandboxOwner {
  nodeId: string;
  url: string;
  state: NodeRecord["state"];
}

/** Sandboxes on a node and what they hold of its capacity. */
export interface NodeLoad {
  nodeId: string;
  /** Sandboxes by status (destroyed ones are not counted). */
  sandboxes: Partial<Record<SandboxStatus, number>>;
  /** vCPUs and memory its sandboxes hold (those in NODE_BOUND_STATUSES). */
  vcpus: number;
  memoryMb: number;
}

/**
 * Statuses in which a sandbox's processes run on its node: they hold the node's vCPUs and memory, and die
 * with it. A paused sandbox holds only a slot and its image.
 */
export const NODE_BOUND_STATUSES: SandboxStatus[] = ["creating", "running", "pausing", "resuming"];

/** Why a lost node's sandboxes that were not paused turn `error`. */
export const NODE_LOST_REASON = "node_lost";

/**
 * A write about one of this node's sandboxes was refused: the node's lease ran out, it was declared lost,
 * or it registered again since (another epoch). The cluster may have acted on the sandbox meanwhile, so
 * the node must not change it until it registered again.
 */
export class NodeFencedError extends Error {
  constructor(
    readonly nodeId: string,
    readonly epoch: number,
  ) {
    super(`node ${nodeId} (epoch ${epoch}) no longer holds its lease: its writes about its sandboxes are refused`);
  }
}

/**
 * The database cannot be reached (down, restarting, or the connection broke mid-query). A transaction
 * that failed this way was rolled back, unless the connection broke while it committed.
 */
export class StoreUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`the database is unavailable: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}
