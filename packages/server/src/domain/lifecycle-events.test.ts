import type { SandboxStatus } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import type { SandboxRecord, SnapshotRecord } from "./index.js";
import { checkoutEvent, sandboxTransitionEvents, snapshotEvents } from "./lifecycle-events.js";

const base = {
  id: "sbx_aaaaaaaaaaaaaaaaaaaa",
  orgId: "org_a",
  status: "running",
  reason: null,
  template: "base",
  vcpus: 1,
  memoryMb: 512,
  diskMb: 4096,
  metadata: { team: "x" },
  timeoutMs: 60_000,
} as unknown as SandboxRecord;

const at = (status: SandboxStatus, reason: string | null = null): SandboxRecord => ({ ...base, status, reason });
const types = (before: SandboxRecord, after: SandboxRecord, cause?: string) =>
  sandboxTransitionEvents(before, after, 1, cause).map((e) => [e.type, e.data.reason ?? e.data.action]);

describe("sandbox transitions as events", () => {
  it("records settled states, not the transitional ones", () => {
    expect(types(at("creating"), at("running"))).toEqual([["sandbox.created", undefined]]);
    expect(types(at("running"), at("pausing"), "requested")).toEqual([]);
    expect(types(at("pausing"), at("paused"), "requested")).toEqual([["sandbox.paused", "requested"]]);
    expect(types(at("paused"), at("resuming"))).toEqual([]);
    expect(types(at("resuming"), at("running"))).toEqual([["sandbox.resumed", undefined]]);
    expect(types(at("running"), at("destroying"), "requested")).toEqual([]);
    expect(types(at("destroying"), at("destroyed"), "requested")).toEqual([["sandbox.destroyed", "requested"]]);
  });

  it("records nothing for a failed pause or resume that went back where it was", () => {
    expect(types(at("pausing"), at("running"))).toEqual([]);
    expect(types(at("resuming"), at("paused"))).toEqual([]);
    expect(types(at("running"), at("running"))).toEqual([]);
  });

  it("records a timeout as expired, then what it caused", () => {
    expect(types(at("running"), at("destroying", "expired"), "expired")).toEqual([["sandbox.expired", "destroy"]]);
    expect(types(at("destroying", "expired"), at("destroyed", "expired"), "expired")).toEqual([
      ["sandbox.destroyed", "expired"],
    ]);
    expect(types(at("running"), at("pausing"), "timeout")).toEqual([["sandbox.expired", "pause"]]);
    expect(types(at("pausing"), at("paused"), "timeout")).toEqual([["sandbox.paused", "timeout"]]);
  });

  it("records deaths and failed starts with their reason", () => {
    expect(types(at("running"), at("error", "oom"))).toEqual([["sandbox.error", "oom"]]);
    expect(types(at("creating"), at("error", "start_failed"))).toEqual([["sandbox.error", "start_failed"]]);
  });

  it("says a destroy was requested even when an older error reason is on the record", () => {
    expect(types(at("destroying", "crashed"), at("destroyed", "crashed"), "requested")).toEqual([
      ["sandbox.destroyed", "requested"],
    ]);
    // Finished after a restart, where the cause is gone: the record's reason is what is known.
    expect(types(at("destroying", "expired"), at("destroyed", "expired"))).toEqual([["sandbox.destroyed", "expired"]]);
  });

  it("belongs to the sandbox's organisation and carries what it was created with", () => {
    const [created] = sandboxTransitionEvents(at("creating"), at("running"), 42, undefined);
    expect(created).toMatchObject({
      orgId: "org_a",
      sandboxId: base.id,
      at: 42,
      data: { template: "base", resources: { vcpus: 1, memoryMb: 512, diskMb: 4096 }, metadata: { team: "x" } },
    });
    expect(checkoutEvent({ ...at("running"), orgId: "org_b" }, "pool1", 7)).toMatchObject({
      orgId: "org_b",
      type: "sandbox.created",
      data: { warmPool: "pool1" },
    });
  });
});

describe("events of a cluster", () => {
  it("name the node the sandbox lives on", () => {
    const onNode = (status: SandboxStatus, reason: string | null = null) => ({
      ...at(status, reason),
      nodeId: "node-2",
    });
    const [lost] = sandboxTransitionEvents(onNode("running"), onNode("error", "node_lost"), 1, "node_lost");
    expect(lost).toMatchObject({ type: "sandbox.error", data: { node: "node-2", reason: "node_lost" } });
    expect(checkoutEvent(onNode("running"), "pool1", 1).data).toMatchObject({ node: "node-2" });
  });
});

describe("snapshot transitions as events", () => {
  const snap = { id: "snp_1", orgId: "org_a", sourceSandboxId: base.id, name: "n", sizeBytes: 10 } as SnapshotRecord;
  it("records a snapshot when it becomes ready, for its source sandbox", () => {
    const events = snapshotEvents({ ...snap, status: "creating" }, { ...snap, status: "ready" }, 3);
    expect(events).toEqual([
      {
        orgId: "org_a",
        sandboxId: base.id,
        type: "snapshot.created",
        at: 3,
        data: { snapshotId: "snp_1", name: "n", sizeBytes: 10 },
      },
    ]);
    expect(snapshotEvents({ ...snap, status: "creating" }, { ...snap, status: "failed" }, 3)).toEqual([]);
  });
});
