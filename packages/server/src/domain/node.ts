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
  /** Its lease has not run out (the database's clock): a node that stopped answering shows here first. */
  leaseLive: boolean;
}

/**
 * How far each resource of a node may be promised beyond what it has: the sum of live sandboxes' limits
 * may reach capacity × factor. A sandbox's vCPUs are a CPU-time ceiling and its disk a sparse image, so
 * both are usually overcommitted; memory limits are what the host must really hold.
 */
export interface Overcommit {
  cpu: number;
  memory: number;
  disk: number;
}

/** What a sandbox asks of the node it lands on. */
export interface ResourceRequest {
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}

/**
 * Statuses whose sandboxes hold a node's vCPUs and memory. A paused sandbox holds neither (its memory is
 * in an image on disk) but keeps its disk and its network slot: it counts for `diskMb` and `sandboxes`.
 */
export const COMPUTE_STATUSES = ["creating", "running", "pausing", "resuming"] as const;
export const RESIDENT_STATUSES = [...COMPUTE_STATUSES, "paused"] as const;

/** A node with what its sandboxes hold now, as placement sees it. */
export interface NodeLoad {
  node: NodeRecord;
  /** The lease has not run out (by the database's clock). */
  leaseLive: boolean;
  allocated: NodeCapacity;
}

/** What a node may promise: capacity × overcommit (sandbox count is never overcommitted). */
export function allocatableOf(capacity: NodeCapacity, overcommit: Overcommit): NodeCapacity {
  return {
    vcpus: Math.floor(capacity.vcpus * overcommit.cpu),
    memoryMb: Math.floor(capacity.memoryMb * overcommit.memory),
    diskMb: Math.floor(capacity.diskMb * overcommit.disk),
    sandboxes: capacity.sandboxes,
  };
}

/** A resource one more sandbox would take over what the node may promise. */
export interface Shortfall {
  resource: keyof NodeCapacity;
  allocatable: number;
  allocated: number;
  requested: number;
}

/** The first resource that one more sandbox of `request` would take over the node's allocatable. */
export function shortfallOf(
  capacity: NodeCapacity,
  allocated: NodeCapacity,
  request: ResourceRequest,
  overcommit: Overcommit,
): Shortfall | undefined {
  const allocatable = allocatableOf(capacity, overcommit);
  const wanted: NodeCapacity = { ...request, sandboxes: 1 };
  for (const resource of ["sandboxes", "vcpus", "memoryMb", "diskMb"] as const) {
    if (allocated[resource] + wanted[resource] > allocatable[resource]) {
      return {
        resource,
        allocatable: allocatable[resource],
        allocated: allocated[resource],
        requested: wanted[resource],
      };
    }
  }
  return undefined;
}

/** Thrown by insertSandbox when the node cannot take one more sandbox of that size. */
export class NoCapacityError extends Error {
  constructor(
    readonly nodeId: string,
    readonly shortfall: Shortfall,
  ) {
    super(`node ${nodeId} has no room: ${describeShortfall(shortfall)}`);
  }
}

export function describeShortfall(s: Shortfall): string {
  return `${s.resource} ${s.allocated} of ${s.allocatable} allocated, ${s.requested} requested`;
}

/** Sandboxes on a node by status and what they hold of its capacity (for operators). */
export interface NodeUsage {
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
export const NODE_BOUND_STATUSES: SandboxStatus[] = [...COMPUTE_STATUSES];

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
