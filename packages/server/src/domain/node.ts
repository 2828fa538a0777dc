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
