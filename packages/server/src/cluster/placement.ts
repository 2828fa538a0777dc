import {
  allocatableOf,
  describeShortfall,
  type NodeCapacity,
  type NodeLoad,
  type NodeRecord,
  type Overcommit,
  type ResourceRequest,
  shortfallOf,
} from "../domain/index.js";

/** What a create asks of placement. */
export interface PlacementRequest extends ResourceRequest {
  /** Only this node (the request's `placement.node`, or the node that holds what the sandbox needs). */
  node?: string;
  /** Only nodes that carry every one of these labels. */
  labels?: Record<string, string>;
}

export interface PlacementPlan {
  /** Nodes that can take the sandbox, best first. */
  candidates: NodeRecord[];
  /** Nodes the request selects that cannot take it now, with why (for the no_capacity answer). */
  refused: { node: string; reason: string }[];
}

export interface PlacementContext {
  /** The node that plans (it does not need a live lease to know that it is alive). */
  self: string;
  overcommit: Overcommit;
  /** Ready warm-pool members per node for the pool this create would check out from. */
  warmReady?: ReadonlyMap<string, number>;
}

function hasLabels(node: NodeRecord, labels: Record<string, string> | undefined): boolean {
  return Object.entries(labels ?? {}).every(([k, v]) => node.labels[k] === v);
}

/** The largest share of any resource the node would have promised once the sandbox is on it (0..1). */
export function shareAfter(capacity: NodeCapacity, allocated: NodeCapacity, request: ResourceRequest, o: Overcommit) {
  const allocatable = allocatableOf(capacity, o);
  const wanted: NodeCapacity = { ...request, sandboxes: 1 };
  return Math.max(
    ...(["vcpus", "memoryMb", "diskMb", "sandboxes"] as const).map(
      (r) => (allocated[r] + wanted[r]) / Math.max(1, allocatable[r]),
    ),
  );
}

/**
 * Where a sandbox may go, best first: nodes that are `ready` with a live lease, that the request selects
 * (node, labels) and that have room for it (capacity × overcommit minus what their sandboxes hold);
 * among them nodes with a ready warm-pool member first (a checkout is far faster than a cold start), then
 * the least allocated (spread), then the planning node itself (no hop), then by id. Pure: the store's
 * insert checks room again, atomically, on the node that creates.
 */
export function planPlacement(loads: NodeLoad[], request: PlacementRequest, ctx: PlacementContext): PlacementPlan {
  const refused: PlacementPlan["refused"] = [];
  const fitting: { node: NodeRecord; share: number; warm: boolean }[] = [];
  for (const { node, leaseLive, allocated } of loads) {
    if (request.node !== undefined && node.id !== request.node) continue;
    if (!hasLabels(node, request.labels)) continue;
    if (node.state !== "ready") {
      refused.push({ node: node.id, reason: `node is ${node.state}` });
      continue;
    }
    if (!leaseLive && node.id !== ctx.self) {
      refused.push({ node: node.id, reason: "node lease expired" });
      continue;
    }
    const short = shortfallOf(node.capacity, allocated, request, ctx.overcommit);
    if (short) {
      refused.push({ node: node.id, reason: describeShortfall(short) });
      continue;
    }
    fitting.push({
      node,
      share: shareAfter(node.capacity, allocated, request, ctx.overcommit),
      warm: (ctx.warmReady?.get(node.id) ?? 0) > 0,
    });
  }
  fitting.sort(
    (a, b) =>
      Number(b.warm) - Number(a.warm) ||
      a.share - b.share ||
      Number(b.node.id === ctx.self) - Number(a.node.id === ctx.self) ||
      a.node.id.localeCompare(b.node.id),
  );
  return { candidates: fitting.map((f) => f.node), refused };
}
