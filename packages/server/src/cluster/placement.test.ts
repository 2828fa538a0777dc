import { describe, expect, it } from "vitest";
import { allocatableOf, type NodeCapacity, type NodeLoad, shortfallOf } from "../domain/index.js";
import { planPlacement } from "./placement.js";

const overcommit = { cpu: 4, memory: 1, disk: 2 };
const capacity: NodeCapacity = { vcpus: 2, memoryMb: 4096, diskMb: 10_000, sandboxes: 10 };
const small = { vcpus: 1, memoryMb: 1024, diskMb: 1000 };
const none: NodeCapacity = { vcpus: 0, memoryMb: 0, diskMb: 0, sandboxes: 0 };

function load(id: string, allocated: Partial<NodeCapacity> = {}, extra: Partial<NodeLoad["node"]> = {}): NodeLoad {
  return {
    node: {
      id,
      url: `http://${id}`,
      state: "ready",
      epoch: 1,
      leaseExpiresAt: 0,
      capacity,
      labels: {},
      version: "1",
      startedAt: 0,
      heartbeatAt: 0,
      ...extra,
    },
    leaseLive: true,
    allocated: { ...none, ...allocated },
  };
}

const ids = (plan: ReturnType<typeof planPlacement>) => plan.candidates.map((n) => n.id);

describe("node capacity", () => {
  it("multiplies capacity by the overcommit, never the sandbox count", () => {
    expect(allocatableOf(capacity, overcommit)).toEqual({ vcpus: 8, memoryMb: 4096, diskMb: 20_000, sandboxes: 10 });
  });

  it("names the first resource one more sandbox would take over", () => {
    expect(shortfallOf(capacity, { ...none, memoryMb: 3584 }, small, overcommit)).toEqual({
      resource: "memoryMb",
      allocatable: 4096,
      allocated: 3584,
      requested: 1024,
    });
    expect(shortfallOf(capacity, { ...none, memoryMb: 3072 }, small, overcommit)).toBeUndefined();
    expect(shortfallOf(capacity, { ...none, sandboxes: 10 }, small, overcommit)?.resource).toBe("sandboxes");
  });
});

describe("planPlacement", () => {
  const ctx = { self: "b", overcommit };

  it("spreads: the least allocated node first, the planning node on a tie, then by id", () => {
    expect(ids(planPlacement([load("a"), load("b"), load("c")], small, ctx))).toEqual(["b", "a", "c"]);
    const loads = [load("a", { memoryMb: 2048, sandboxes: 2 }), load("b", { memoryMb: 1024, sandboxes: 1 }), load("c")];
    expect(ids(planPlacement(loads, small, ctx))).toEqual(["c", "b", "a"]);
  });

  it("leaves out nodes without room, not ready or with an expired lease, and says why", () => {
    const loads = [
      load("a", { memoryMb: 4096, sandboxes: 4 }),
      load("c", {}, { state: "draining" }),
      { ...load("d"), leaseLive: false },
      load("e"),
    ];
    const plan = planPlacement(loads, small, ctx);
    expect(ids(plan)).toEqual(["e"]);
    expect(plan.refused).toEqual([
      { node: "a", reason: "memoryMb 4096 of 4096 allocated, 1024 requested" },
      { node: "c", reason: "node is draining" },
      { node: "d", reason: "node lease expired" },
    ]);
  });

  it("trusts its own node without a live lease (it knows it runs)", () => {
    expect(ids(planPlacement([{ ...load("b"), leaseLive: false }], small, ctx))).toEqual(["b"]);
  });

  it("keeps to the requested node and to nodes carrying every requested label", () => {
    const loads = [
      load("a", {}, { labels: { zone: "x", gpu: "no" } }),
      load("b", {}, { labels: { zone: "y" } }),
      load("c", {}, { labels: { zone: "x" } }),
    ];
    expect(ids(planPlacement(loads, { ...small, node: "c" }, ctx))).toEqual(["c"]);
    expect(ids(planPlacement(loads, { ...small, labels: { zone: "x" } }, ctx))).toEqual(["a", "c"]);
    expect(ids(planPlacement(loads, { ...small, labels: { zone: "x", gpu: "no" } }, ctx))).toEqual(["a"]);
    expect(planPlacement(loads, { ...small, labels: { zone: "z" } }, ctx)).toEqual({ candidates: [], refused: [] });
  });

  it("prefers a node with a ready warm-pool member over a less allocated one", () => {
    const loads = [load("a", { memoryMb: 2048, sandboxes: 2 }), load("b"), load("c")];
    const warmReady = new Map([["a", 1]]);
    expect(ids(planPlacement(loads, small, { ...ctx, warmReady }))).toEqual(["a", "b", "c"]);
  });
});
