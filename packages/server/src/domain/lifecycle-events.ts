import type { EventType } from "@sandpit/contract";
import type { SandboxRecord } from "./sandbox.js";
import type { SnapshotRecord } from "./snapshot.js";

/** An event before the store gives it an id. */
export interface EventDraft {
  orgId: string;
  sandboxId: string;
  type: EventType;
  at: number;
  data: Record<string, unknown>;
}

/** Why a transition happens, when the record alone does not say (pause: requested, timeout, idle…). */
export type TransitionCause = string | undefined;

/**
 * The lifecycle events a sandbox status change means. Transitional statuses (creating, pausing,
 * resuming, destroying) are not events of their own: a pause is recorded when it is done, and a pause
 * that failed back to `running` records nothing. A timeout is recorded as `sandbox.expired` when it
 * starts what it causes (the destroy or the pause). Every event names the node it happened on (`node`).
 */
export function sandboxTransitionEvents(
  before: SandboxRecord,
  after: SandboxRecord,
  at: number,
  cause: TransitionCause,
): EventDraft[] {
  if (before.status === after.status) return [];
  const event = (type: EventType, data: Record<string, unknown> = {}): EventDraft => ({
    orgId: after.orgId,
    sandboxId: after.id,
    type,
    at,
    data: { status: after.status, node: after.nodeId, ...data },
  });
  switch (after.status) {
    case "running":
      if (before.status === "creating") return [event("sandbox.created", createdData(after))];
      if (before.status === "resuming") return [event("sandbox.resumed", cause ? { reason: cause } : {})];
      return [];
    case "pausing":
      return cause === "timeout" ? [event("sandbox.expired", { action: "pause", timeoutMs: after.timeoutMs })] : [];
    case "paused":
      return before.status === "pausing" ? [event("sandbox.paused", { reason: cause ?? "requested" })] : [];
    case "destroying":
      return after.reason === "expired" && before.status === "running"
        ? [event("sandbox.expired", { action: "destroy", timeoutMs: after.timeoutMs })]
        : [];
    case "destroyed":
      return [event("sandbox.destroyed", { reason: cause ?? after.reason ?? "requested" })];
    case "error":
      return [event("sandbox.error", { reason: after.reason ?? "unknown", previousStatus: before.status })];
    default:
      return [];
  }
}

/** A running sandbox from a warm pool moved to an organisation: for that organisation, it was created. */
export function checkoutEvent(after: SandboxRecord, poolId: string, at: number): EventDraft {
  return {
    orgId: after.orgId,
    sandboxId: after.id,
    type: "sandbox.created",
    at,
    data: { status: after.status, node: after.nodeId, ...createdData(after), warmPool: poolId },
  };
}

/** A paused sandbox that another node took over (a drain, or its node was lost): it resumes there. */
export function movedEvent(after: SandboxRecord, from: string, at: number): EventDraft {
  return {
    orgId: after.orgId,
    sandboxId: after.id,
    type: "sandbox.moved",
    at,
    data: { status: after.status, from, to: after.nodeId },
  };
}

/** A snapshot that became ready. */
export function snapshotEvents(before: SnapshotRecord, after: SnapshotRecord, at: number): EventDraft[] {
  if (before.status === after.status || after.status !== "ready") return [];
  return [
    {
      orgId: after.orgId,
      sandboxId: after.sourceSandboxId,
      type: "snapshot.created",
      at,
      data: {
        snapshotId: after.id,
        name: after.name,
        sizeBytes: after.sizeBytes,
        ...(after.nodeId ? { node: after.nodeId } : {}),
      },
    },
  ];
}

function createdData(r: SandboxRecord) {
  return {
    template: r.template,
    resources: { vcpus: r.vcpus, memoryMb: r.memoryMb, diskMb: r.diskMb },
    metadata: r.metadata,
  };
}
