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
