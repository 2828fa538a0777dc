import { rm } from "node:fs/promises";
import type { CreateSandboxParams, Snapshot } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { OrgRecord, SandboxRecord, SnapshotRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { iso, now } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { SandboxService } from "./sandbox-service.js";

export function toSnapshot(r: SnapshotRecord): Snapshot {
  return {
    id: r.id,
    name: r.name,
    sourceSandboxId: r.sourceSandboxId,
    status: r.status,
    template: r.template,
    resources: { vcpus: r.vcpus, memoryMb: r.memoryMb, diskMb: r.diskMb },
    sizeBytes: r.sizeBytes,
    createdAt: iso(r.createdAt)!,
  };
}

/**
 * Snapshots with memory: a copy of a sandbox's processes, memory and files that any number of new
 * sandboxes start from. Fork is a snapshot that is used at once and thrown away.
 */
export class SnapshotService {
  constructor(
    private readonly store: Store,
    private readonly sandboxes: SandboxService,
    private readonly runtime: SandboxRuntime,
    private readonly snapshotDir: (id: string) => string,
    private readonly log: FastifyBaseLogger,
  ) {}

  async create(org: OrgRecord, sandboxId: string, name: string | null): Promise<SnapshotRecord> {
    return this.sandboxes.withPausedSandbox(org, sandboxId, async (source) => {
      const record = this.newRecord(org, source, name);
      await this.store.insertSnapshot(record);
      try {
        const sizeBytes = await this.runtime.copySnapshot(sandboxId, this.snapshotDir(record.id));
        await this.store.updateSnapshot(record.id, { status: "ready", sizeBytes });
        this.log.info({ snapshotId: record.id, sandboxId, sizeBytes }, "snapshot created");
        return { ...record, status: "ready" as const, sizeBytes };
      } catch (e) {
        await this.store.updateSnapshot(record.id, { status: "failed" });
        await rm(this.snapshotDir(record.id), { recursive: true, force: true });
        throw new ApiError("internal", `snapshot failed: ${e instanceof Error ? e.message : e}`);
      }
    });
  }

  private newRecord(org: OrgRecord, source: SandboxRecord, name: string | null): SnapshotRecord {
    return {
      id: `snp_${randomBase32(20)}`,
      orgId: org.id,
      name,
      sourceSandboxId: source.id,
      nodeId: source.nodeId,
      status: "creating",
      template: source.template,
      vcpus: source.vcpus,
      memoryMb: source.memoryMb,
      diskMb: source.diskMb,
      env: source.env,
      cwd: source.cwd,
      user: source.user,
      networkPolicy: source.networkPolicy,
      agentToken: source.agentToken,
      volumes: source.volumes,
      desktop: source.desktop,
      sizeBytes: null,
      createdAt: now(),
    };
  }

  async get(org: OrgRecord, id: string): Promise<SnapshotRecord> {
    const record = await this.store.getSnapshot(id);
    if (!record || record.orgId !== org.id) throw new ApiError("not_found", `snapshot ${id} not found`);
    return record;
  }

  list(org: OrgRecord): Promise<SnapshotRecord[]> {
    return this.store.listSnapshots(org.id);
  }

  async delete(org: OrgRecord, id: string): Promise<void> {
    await this.get(org, id);
    await this.store.deleteSnapshot(id);
    await rm(this.snapshotDir(id), { recursive: true, force: true });
  }

  /**
   * `count` new running sandboxes that continue the given sandbox as it is now, all or none: when one
   * fails to start, the others are destroyed and its error is thrown.
   */
  async fork(org: OrgRecord, sandboxId: string, count: number, base: CreateSandboxParams): Promise<SandboxRecord[]> {
    const results = await this.forkEach(org, sandboxId, count, base);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (!failed) return results.map((r) => (r as PromiseFulfilledResult<SandboxRecord>).value);
    for (const r of results) {
      if (r.status === "fulfilled") await this.sandboxes.destroy(org, r.value.id).catch(() => undefined);
    }
    throw failed.reason;
  }

  /**
   * Forks one snapshot into `count` sandboxes that start independently: one outcome per child. The
   * children keep the source's timeout and metadata unless `overrides` gives them
   * (a dialect whose names live in metadata gives each fork its own).
   */
  async forkEach(
    org: OrgRecord,
    sandboxId: string,
    count: number,
    base: CreateSandboxParams,
    overrides: { timeoutMs?: number; metadata?: Record<string, string> } = {},
  ): Promise<PromiseSettledResult<SandboxRecord>[]> {
    const snapshot = await this.create(org, sandboxId, `fork of ${sandboxId}`);
    try {
      const source = await this.sandboxes.get(org, sandboxId);
      return await Promise.allSettled(
        Array.from({ length: count }, () =>
          this.sandboxes.create(org, {
            ...base,
            snapshotId: snapshot.id,
            timeoutMs: overrides.timeoutMs ?? source.timeoutMs,
            metadata: { ...(overrides.metadata ?? source.metadata), forkOf: sandboxId },
          }),
        ),
      );
    } finally {
      await this.delete(org, snapshot.id);
    }
  }
}
