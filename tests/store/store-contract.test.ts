// The same cases against both stores: what the services rely on must hold for SQLite and PostgreSQL alike.
import { mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import type { SandboxStatus } from "@sandpit/contract";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type EventRecord,
  NoCapacityError,
  NodeFencedError,
  QuotaExceededError,
  type SandboxRecord,
  type SnapshotRecord,
  VolumeMissingError,
  VolumeNameTakenError,
} from "../../packages/server/src/domain/index.js";
import { PgStore } from "../../packages/server/src/store/pg-store.js";
import { SqliteStore } from "../../packages/server/src/store/sqlite-store.js";
import type { Store } from "../../packages/server/src/store/store.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";

let cluster: TestPostgres;
let sqliteDir: string;

beforeAll(async () => {
  cluster = await startPostgres();
  sqliteDir = mkdtempSync("/var/tmp/sandpit-test-store-");
});

afterAll(async () => {
  await cluster?.close();
  if (sqliteDir) rmSync(sqliteDir, { recursive: true, force: true });
});

/** Each suite opens a store on a fresh database; `reopen` opens another store on the same one. */
const backends: { name: string; fresh(): Promise<{ open(): Promise<Store> }> }[] = [
  {
    name: "SQLite",
    async fresh() {
      const file = path.join(mkdtempSync(path.join(sqliteDir, "db-")), "sandpit.db");
      return { open: async () => new SqliteStore(file) };
    },
  },
  {
    name: "PostgreSQL",
    async fresh() {
      const url = await cluster.createDatabase(`contract_${Math.random().toString(36).slice(2, 10)}`);
      return { open: () => PgStore.open(url) };
    },
  },
];

let seq = 0;
const unique = (prefix: string) => `${prefix}${String(++seq).padStart(20, "0")}`.slice(0, prefix.length + 20);

function sandbox(orgId: string, fields: Partial<SandboxRecord> = {}): Omit<SandboxRecord, "netIndex" | "nodeId"> {
  return {
    id: unique("sbx_"),
    orgId,
    status: "creating",
    reason: null,
    template: "base",
    vcpus: 1,
    memoryMb: 512,
    diskMb: 4096,
    env: { A: "1", PATH_EXTRA: "/x" },
    metadata: { team: "blue", "sandpit.pool": "none", 'odd"key': "v" },
    cwd: "/workspace",
    timeoutMs: 300_000,
    networkPolicy: { mode: "custom", allow: ["example.com"] } as unknown as SandboxRecord["networkPolicy"],
    timeoutAction: "destroy",
    lifecycle: "ephemeral",
    idleTimeoutMs: null,
    autoResume: true,
    hibernate: true,
    ports: [3000, 8080],
    allPorts: false,
    publicPorts: true,
    trafficToken: "tt",
    agentToken: "at",
    user: "sandbox",
    mainCommandId: null,
    volumes: [],
    desktop: null,
    createdAt: Date.now() + seq,
    startedAt: null,
    expiresAt: 1_900_000_000_000,
    destroyedAt: null,
    ...fields,
  };
}

const NO_QUOTA = { maxSandboxes: null, maxVcpus: null, maxMemoryMb: null };
/** Overcommit so large that no registered node runs out of room (the capacity cases set their own). */
const ANY_ROOM = { cpu: 1e6, memory: 1e6, disk: 1e6 };

/** Runs `n` calls at once; answers how many were fulfilled and the reasons of the rest. */
async function race<T>(n: number, call: (i: number) => Promise<T>) {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => call(i)));
  return {
    values: settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : [])),
    errors: settled.flatMap((s) => (s.status === "rejected" ? [s.reason as Error] : [])),
  };
}

describe.each(backends)("$name store", (backend) => {
  let store: Store;
  let reopen: () => Promise<Store>;
  let orgId: string;

  beforeAll(async () => {
    const db = await backend.fresh();
    reopen = db.open;
    store = await db.open();
    orgId = (await store.ensureOrg("acme")).id;
  });

  afterAll(async () => {
    await store?.close();
  });

  it("gives every sandbox the lowest free network slot, and refuses above the last one", async () => {
    const a = await store.insertSandbox(sandbox(orgId), 2, NO_QUOTA, ANY_ROOM);
    const b = await store.insertSandbox(sandbox(orgId), 2, NO_QUOTA, ANY_ROOM);
    const c = await store.insertSandbox(sandbox(orgId), 2, NO_QUOTA, ANY_ROOM);
    expect([a.netIndex, b.netIndex, c.netIndex]).toEqual([0, 1, 2]);
    await expect(store.insertSandbox(sandbox(orgId), 2, NO_QUOTA, ANY_ROOM)).rejects.toThrow("no free network slot");
    await store.updateSandbox(b.id, { status: "destroyed", netIndex: null, destroyedAt: Date.now() });
    expect((await store.insertSandbox(sandbox(orgId), 2, NO_QUOTA, ANY_ROOM)).netIndex).toBe(1);
    // Slots are unique across concurrent creates too, of any organisations.
    const orgs = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => store.ensureOrg(`slots-${i}`)));
    const { values } = await race(8, (i) => store.insertSandbox(sandbox(orgs[i]!.id), 1000, NO_QUOTA, ANY_ROOM));
    const slots = values.map((s) => s.netIndex);
    expect(new Set(slots).size).toBe(8);
    expect(Math.min(...(slots as number[]))).toBe(3);
  });

  it("keeps organisations and their API keys", async () => {
    const again = await store.ensureOrg("acme");
    expect(again.id).toBe(orgId);
    const other = await store.ensureOrg("globex");
    expect(other.id).not.toBe(orgId);
    const before = await store.countApiKeys();
    await store.addApiKey(orgId, "hash-1", "first");
    await store.addApiKey(orgId, "hash-1", "same key again");
    expect(await store.countApiKeys()).toBe(before + 1);
    expect(await store.orgByApiKeyHash("hash-1")).toMatchObject({ id: orgId, name: "acme" });
    expect(await store.orgByApiKeyHash("hash-unknown")).toBeUndefined();
    expect(await store.getOrgQuota(other.id)).toEqual(NO_QUOTA);
    await store.setOrgQuota(other.id, { maxSandboxes: 5, maxVcpus: null, maxMemoryMb: 2048 });
    await store.setOrgQuota(other.id, { maxSandboxes: 4, maxVcpus: null, maxMemoryMb: 2048 });
    expect(await store.getOrgQuota(other.id)).toEqual({ maxSandboxes: 4, maxVcpus: null, maxMemoryMb: 2048 });
  });

  it("stores a sandbox record field for field and lists it by status and metadata", async () => {
    const org = (await store.ensureOrg("lister")).id;
    const record = sandbox(org, { metadata: { team: "red", "a.b": "dotted", 'q"uote': "x" } });
    const inserted = await store.insertSandbox(record, 1000, NO_QUOTA, ANY_ROOM);
    expect(await store.getSandbox(record.id)).toEqual(inserted);
    expect(inserted).toEqual({ ...record, nodeId: store.nodeId, netIndex: inserted.netIndex });
    const running = await store.insertSandbox(
      sandbox(org, { status: "running", metadata: { team: "red" } }),
      1000,
      NO_QUOTA,
      ANY_ROOM,
    );
    const gone = await store.insertSandbox(sandbox(org, { status: "destroyed" }), 1000, NO_QUOTA, ANY_ROOM);

    const ids = async (filter: Parameters<Store["listSandboxes"]>[1]) =>
      (await store.listSandboxes(org, filter)).map((s) => s.id);
    // Newest first; destroyed ones only when asked for.
    expect(await ids({})).toEqual([running.id, record.id]);
    expect(await ids({ includeDestroyed: true })).toEqual([gone.id, running.id, record.id]);
    expect(await ids({ statuses: ["running"] })).toEqual([running.id]);
    expect(await ids({ metadata: { team: "red" } })).toEqual([running.id, record.id]);
    expect(await ids({ metadata: { "a.b": "dotted", 'q"uote': "x" } })).toEqual([record.id]);
    expect(await ids({ metadata: { team: "blue" } })).toEqual([]);
    expect(await ids({ limit: 1 })).toEqual([running.id]);
    expect(await store.listSandboxes(orgId, { metadata: { team: "red" } })).toEqual([]);
    const inStatus = await store.sandboxesInStatus(["running", "destroyed"]);
    expect(inStatus.map((s) => s.id)).toEqual(expect.arrayContaining([running.id, gone.id]));
    expect(inStatus.map((s) => s.id)).not.toContain(record.id);
  });

  it("keeps a sandbox's desktop settings, and none for a sandbox without one", async () => {
    const desktop = { width: 800, height: 600, dpi: 120 };
    const withDesktop = await store.insertSandbox(sandbox(orgId, { desktop }), 1000, NO_QUOTA, ANY_ROOM);
    const without = await store.insertSandbox(sandbox(orgId), 1000, NO_QUOTA, ANY_ROOM);
    const again = await reopen();
    try {
      expect((await again.getSandbox(withDesktop.id))?.desktop).toEqual(desktop);
      expect((await again.getSandbox(without.id))?.desktop).toBeNull();
    } finally {
      await again.close();
    }
  });

  it("applies a conditional update only in the expected statuses, and exactly once when raced", async () => {
    const s = await store.insertSandbox(sandbox(orgId, { status: "running" }), 1000, NO_QUOTA, ANY_ROOM);
    expect(await store.updateSandbox(s.id, { status: "destroying" }, ["paused"])).toBeUndefined();
    expect((await store.getSandbox(s.id))?.status).toBe("running");
    expect(await store.updateSandbox(s.id, {}, ["paused"])).toBeUndefined();
    expect((await store.updateSandbox(s.id, {}, ["running"]))?.status).toBe("running");
    const patched = await store.updateSandbox(s.id, { metadata: { k: "v" }, ports: [1], autoResume: false });
    expect(patched).toMatchObject({ metadata: { k: "v" }, ports: [1], autoResume: false, status: "running" });
    expect(await store.updateSandbox("sbx_nosuchsandboxxxxxxxx", { status: "running" })).toBeUndefined();

    const { values } = await race(10, (i) =>
      store.updateSandbox(s.id, { status: "destroying", reason: `caller ${i}` }, ["running"]),
    );
    const winners = values.filter((v) => v !== undefined);
    expect(winners).toHaveLength(1);
    expect((await store.getSandbox(s.id))?.reason).toBe(winners[0]?.reason);
  });

  it("never takes an organisation over its quota, even with creates at once", async () => {
    const org = (await store.ensureOrg("quota-race")).id;
    const quota = { maxSandboxes: 3, maxVcpus: null, maxMemoryMb: null };
    const { values, errors } = await race(10, () => store.insertSandbox(sandbox(org), 1000, quota, ANY_ROOM));
    expect(values).toHaveLength(3);
    expect(errors).toHaveLength(7);
    for (const e of errors) expect(e).toBeInstanceOf(QuotaExceededError);
    expect(errors[0]).toMatchObject({ limit: "maxSandboxes", max: 3, current: 3 });

    // Destroyed sandboxes stop counting; vCPUs and memory are limits of their own.
    await store.updateSandbox(values[0]!.id, { status: "destroyed", netIndex: null });
    const big = store.insertSandbox(sandbox(org, { vcpus: 4 }), 1000, { ...quota, maxVcpus: 5 }, ANY_ROOM);
    await expect(big).rejects.toMatchObject({ limit: "maxVcpus", max: 5, current: 2 });
    const vcpuRace = await race(6, () =>
      store.insertSandbox(
        sandbox(org, { vcpus: 2 }),
        1000,
        { maxSandboxes: null, maxVcpus: 8, maxMemoryMb: null },
        ANY_ROOM,
      ),
    );
    expect(vcpuRace.values).toHaveLength(3);
  });

  it("records lifecycle events with the status change, and queues their webhook deliveries", async () => {
    const org = (await store.ensureOrg("events")).id;
    const heard: EventRecord[] = [];
    const unsubscribe = store.onEvents((events) => heard.push(...events));
    await store.insertWebhook({
      id: unique("wh_"),
      orgId: org,
      url: "http://a",
      secret: "s",
      events: [],
      createdAt: 1,
    });
    const pausedOnly = unique("wh_");
    await store.insertWebhook({
      id: pausedOnly,
      orgId: org,
      url: "http://b",
      secret: "s",
      events: ["sandbox.paused"],
      createdAt: 2,
    });
    expect((await store.listWebhooks(org)).map((w) => w.url)).toEqual(["http://a", "http://b"]);

    const s = await store.insertSandbox(sandbox(org), 1000, NO_QUOTA, ANY_ROOM);
    await store.updateSandbox(s.id, { status: "running", startedAt: Date.now() }, ["creating"]);
    await store.updateSandbox(s.id, { status: "pausing" }, ["running"], "requested");
    await store.updateSandbox(s.id, { status: "paused" }, ["pausing"], "idle");
    // A refused transition records nothing.
    await store.updateSandbox(s.id, { status: "destroying" }, ["running"]);
    await store.updateSandbox(s.id, { status: "destroyed", destroyedAt: Date.now() }, undefined, "requested");
    unsubscribe();

    const events = await store.listEvents(org, { order: "asc", limit: 100 });
    expect(events.map((e) => [e.type, e.data.reason])).toEqual([
      ["sandbox.created", undefined],
      ["sandbox.paused", "idle"],
      ["sandbox.destroyed", "requested"],
    ]);
    expect(events[0]?.data).toMatchObject({ status: "running", template: "base", metadata: s.metadata });
    expect(heard).toEqual(events);
    expect(events[0]!.id).toBeLessThan(events[1]!.id);
    expect(await store.latestEventId(org)).toBe(events[2]?.id);
    expect(await store.listEvents(org, { order: "desc", limit: 1 })).toEqual([events[2]]);
    expect(
      await store.listEvents(org, { order: "asc", limit: 10, afterId: events[0]!.id, types: ["sandbox.destroyed"] }),
    ).toEqual([events[2]]);
    expect(await store.listEvents(orgId, { order: "asc", limit: 10, sandboxId: s.id })).toEqual([]);

    // 3 events to the catch-all webhook, 1 to the paused-only one; each claimed once, then leased.
    const now = Date.now() + 1000;
    expect(await store.nextDeliveryDue()).toBeLessThanOrEqual(now);
    const claimed = await store.claimDueDeliveries(now, now + 60_000, 100);
    expect(claimed).toHaveLength(4);
    expect(claimed.filter((c) => c.webhook.id === pausedOnly).map((c) => c.event.type)).toEqual(["sandbox.paused"]);
    expect(await store.claimDueDeliveries(now, now + 60_000, 100)).toEqual([]);
    const first = claimed[0]!;
    await store.recordDeliveryAttempt({
      deliveryId: first.delivery.id,
      eventId: first.event.id,
      eventType: first.event.type,
      attempt: 1,
      at: now,
      statusCode: 500,
      error: null,
      durationMs: 12,
      state: "retrying",
      nextAttemptAt: now + 5,
    });
    const retried = await store.claimDueDeliveries(now + 10, now + 60_000, 100);
    expect(retried.map((c) => [c.delivery.id, c.delivery.attempts])).toEqual([[first.delivery.id, 1]]);
    expect(await store.listDeliveryAttempts(first.webhook.id, 10)).toEqual([
      expect.objectContaining({
        deliveryId: first.delivery.id,
        statusCode: 500,
        state: "retrying",
        eventId: first.event.id,
      }),
    ]);
    await store.deleteWebhook(pausedOnly);
    expect(await store.getWebhook(pausedOnly)).toBeUndefined();
    await store.purgeEvents(Date.now() + 10_000);
    expect(await store.listEvents(org, { order: "asc", limit: 100 })).toEqual([]);
    expect(await store.nextDeliveryDue()).toBeUndefined();
  });

  it("lets exactly one of racing requests claim an idempotency key", async () => {
    const key = unique("key-");
    const { values } = await race(10, (i) =>
      store.claimIdempotencyKey({ orgId, key, requestHash: "h", owner: `srv_${i}`, createdAt: Date.now() }),
    );
    const winners = values.filter((v) => v.claimed);
    expect(winners).toHaveLength(1);
    const owners = new Set(values.flatMap((v) => (v.claimed ? [] : [v.existing.owner])));
    expect(owners.size).toBe(1);
    const owner = [...owners][0]!;
    expect(await store.takeOverIdempotencyKey(orgId, key, "srv_someone_else", "srv_new")).toBe(false);
    const takeOvers = await race(5, (i) => store.takeOverIdempotencyKey(orgId, key, owner, `srv_new_${i}`));
    expect(takeOvers.values.filter(Boolean)).toHaveLength(1);
    await store.completeIdempotencyKey(orgId, key, 201, '{"ok":true}');
    expect(await store.getIdempotencyKey(orgId, key)).toMatchObject({
      owner: null,
      responseStatus: 201,
      responseBody: '{"ok":true}',
      requestHash: "h",
    });
    expect(await store.takeOverIdempotencyKey(orgId, key, null, "srv_late")).toBe(false);
    await store.releaseIdempotencyKey(orgId, key);
    expect(await store.claimIdempotencyKey({ orgId, key, requestHash: "h2", owner: null, createdAt: 1 })).toEqual({
      claimed: true,
    });
    expect(await store.takeOverIdempotencyKey(orgId, key, null, "srv_adopter")).toBe(true);
    await store.purgeIdempotencyKeys(2);
    expect(await store.getIdempotencyKey(orgId, key)).toBeUndefined();
  });

  it("hands each pooled sandbox to one organisation only, within its quota", async () => {
    const pool = (await store.ensureOrg("pool-holder")).id;
    const org = (await store.ensureOrg("pool-taker")).id;
    const pooled = await Promise.all(
      [0, 1, 2].map(() =>
        store.insertSandbox(
          sandbox(pool, { status: "running", metadata: { "sandpit.pool": "p1" } }),
          1000,
          NO_QUOTA,
          ANY_ROOM,
        ),
      ),
    );
    const quota = { maxSandboxes: 2, maxVcpus: null, maxMemoryMb: null };
    const { values, errors } = await race(5, () =>
      store.checkoutPooled(pool, "p1", org, { metadata: { mine: "yes" } }, quota),
    );
    const taken = values.filter((v) => v !== undefined);
    expect(taken).toHaveLength(2);
    expect(new Set(taken.map((t) => t.id)).size).toBe(2);
    expect(errors.every((e) => e instanceof QuotaExceededError)).toBe(true);
    for (const t of taken) expect(t).toMatchObject({ orgId: org, metadata: { mine: "yes" }, status: "running" });
    const created = await store.listEvents(org, { order: "asc", limit: 10, types: ["sandbox.created"] });
    expect(created.map((e) => e.data.warmPool)).toEqual(["p1", "p1"]);
    expect(pooled.map((p) => p.id)).toEqual(expect.arrayContaining(taken.map((t) => t.id)));
    expect(await store.checkoutPooled(pool, "p2", org, {}, NO_QUOTA)).toBeUndefined();

    await store.putWarmPool({ id: "p1", template: "base", size: 3, vcpus: 1, memoryMb: 512, diskMb: 4096 });
    await store.putWarmPool({ id: "p1", template: "base", size: 5, vcpus: 1, memoryMb: 512, diskMb: 4096 });
    await store.putWarmPool({ id: "p0", template: "node22", size: 1, vcpus: 2, memoryMb: 1024, diskMb: 4096 });
    expect((await store.listWarmPools()).map((p) => [p.id, p.size])).toEqual([
      ["p0", 1],
      ["p1", 5],
    ]);
    await store.deleteWarmPool("p0");
    expect((await store.listWarmPools()).map((p) => p.id)).toEqual(["p1"]);
  });

  it("keeps commands of a sandbox", async () => {
    const s = await store.insertSandbox(sandbox(orgId, { status: "running" }), 1000, NO_QUOTA, ANY_ROOM);
    const other = await store.insertSandbox(sandbox(orgId, { status: "running" }), 1000, NO_QUOTA, ANY_ROOM);
    const base = { sandboxId: s.id, cwd: "/w", pid: 10, exitCode: null, timedOut: false, finishedAt: null };
    await store.insertCommand({
      ...base,
      id: "cmd_1",
      argv: ["sh", "-c", "echo"],
      background: false,
      status: "running",
      startedAt: 1,
    });
    await store.insertCommand({
      ...base,
      id: "cmd_2",
      argv: ["sleep", "9"],
      background: true,
      status: "running",
      startedAt: 2,
    });
    await store.updateCommand("cmd_1", { status: "exited", exitCode: 0, timedOut: true, finishedAt: 5 });
    expect(await store.getCommand(s.id, "cmd_1")).toEqual({
      ...base,
      id: "cmd_1",
      argv: ["sh", "-c", "echo"],
      background: false,
      status: "exited",
      exitCode: 0,
      timedOut: true,
      startedAt: 1,
      finishedAt: 5,
    });
    expect(await store.getCommand(other.id, "cmd_1")).toBeUndefined();
    await store.markRunningCommandsLost(s.id);
    const listed = await store.listCommands(s.id);
    expect(listed.map((c) => [c.id, c.status, c.background])).toEqual([
      ["cmd_1", "exited", false],
      ["cmd_2", "lost", true],
    ]);
    expect(listed[1]?.finishedAt).toBeGreaterThan(0);
    // Destroyed sandboxes are purged with their commands.
    await store.updateSandbox(s.id, { status: "destroyed", destroyedAt: 100, netIndex: null });
    expect(await store.purgeDestroyed(101)).toBeGreaterThanOrEqual(1);
    expect(await store.getSandbox(s.id)).toBeUndefined();
    expect(await store.listCommands(s.id)).toEqual([]);
  });

  it("keeps snapshots and records the ready one as an event", async () => {
    const org = (await store.ensureOrg("snapshots")).id;
    const snap: SnapshotRecord = {
      id: unique("snap_"),
      orgId: org,
      name: "before-upgrade",
      sourceSandboxId: "sbx_source",
      status: "creating",
      template: "base",
      vcpus: 1,
      memoryMb: 512,
      diskMb: 4096,
      env: { A: "1" },
      cwd: "/workspace",
      user: null,
      networkPolicy: { mode: "allow-all" } as SnapshotRecord["networkPolicy"],
      agentToken: "t",
      volumes: [{ name: "v", volumeId: "vol_1", mountPath: "/data", readOnly: false }],
      sizeBytes: null,
      createdAt: 10,
    };
    await store.insertSnapshot(snap);
    await store.insertSnapshot({ ...snap, id: unique("snap_"), name: null, createdAt: 20 });
    await store.updateSnapshot(snap.id, { status: "ready", sizeBytes: 5_000_000_000 });
    expect(await store.getSnapshot(snap.id)).toEqual({ ...snap, status: "ready", sizeBytes: 5_000_000_000 });
    expect((await store.listSnapshots(org)).map((s) => s.createdAt)).toEqual([20, 10]);
    const events = await store.listEvents(org, { order: "asc", limit: 10 });
    expect(events.map((e) => [e.type, e.data.snapshotId, e.data.sizeBytes])).toEqual([
      ["snapshot.created", snap.id, 5_000_000_000],
    ]);
    await store.deleteSnapshot(snap.id);
    expect(await store.getSnapshot(snap.id)).toBeUndefined();
  });

  it("keeps volumes, and never lets a create and a delete of the same volume both succeed", async () => {
    const org = (await store.ensureOrg("volumes")).id;
    const volume = { id: unique("vol_"), orgId: org, name: "data", sizeMb: 1024, createdAt: 1 };
    await store.insertVolume(volume);
    await expect(store.insertVolume({ ...volume, id: unique("vol_") })).rejects.toBeInstanceOf(VolumeNameTakenError);
    expect(await store.getVolume(volume.id)).toEqual(volume);
    expect(await store.getVolumeByName(org, "data")).toEqual(volume);
    expect(await store.listVolumes(org)).toEqual([volume]);
    expect((await store.listVolumes(undefined)).map((v) => v.id)).toContain(volume.id);

    const mount = { volumeId: volume.id, name: "data", mountPath: "/data", readOnly: false };
    const user = await store.insertSandbox(
      sandbox(org, { status: "running", volumes: [mount] }),
      1000,
      NO_QUOTA,
      ANY_ROOM,
    );
    const live: SandboxStatus[] = ["creating", "running", "paused"];
    expect(await store.volumeUsers(volume.id, live)).toEqual([user.id]);
    expect(await store.deleteVolumeUnlessUsed(volume.id, live)).toEqual({ deleted: false, users: [user.id] });
    await store.updateSandbox(user.id, { status: "destroyed", netIndex: null });
    expect(await store.volumeUsers(volume.id, live)).toEqual([]);
    expect(await store.deleteVolumeUnlessUsed(volume.id, live)).toEqual({ deleted: true, users: [] });
    await expect(
      store.insertSandbox(sandbox(org, { volumes: [mount] }), 1000, NO_QUOTA, ANY_ROOM),
    ).rejects.toBeInstanceOf(VolumeMissingError);

    for (let round = 0; round < 5; round++) {
      const v = { ...volume, id: unique("vol_"), name: `race-${round}` };
      await store.insertVolume(v);
      const [created, deleted] = await Promise.allSettled([
        store.insertSandbox(sandbox(org, { volumes: [{ ...mount, volumeId: v.id }] }), 1000, NO_QUOTA, ANY_ROOM),
        store.deleteVolumeUnlessUsed(v.id, live),
      ]);
      const createdOk = created.status === "fulfilled";
      const deletedOk = deleted.status === "fulfilled" && deleted.value.deleted;
      expect(createdOk !== deletedOk).toBe(true);
    }
  });

  it("keeps the egress log in order and follows it by sequence number", async () => {
    const org = (await store.ensureOrg("egress")).id;
    const entry = {
      orgId: org,
      sandboxId: "sbx_egress",
      protocol: "tcp" as const,
      ip: "203.0.113.5",
      port: 443,
      domain: "example.com",
      rule: "allow-all",
      bytesOut: null,
      bytesIn: null,
    };
    await store.insertEgressLog(
      Array.from({ length: 1500 }, (_, i) => ({
        ...entry,
        at: 1000 + i,
        decision: i % 2 ? ("denied" as const) : ("allowed" as const),
        detail: `flow-${i}`,
      })),
    );
    const page = await store.listEgressLog(org, { limit: 2000 });
    expect(page).toHaveLength(1500);
    expect(page.map((e) => e.at)).toEqual(Array.from({ length: 1500 }, (_, i) => 1000 + i));
    const after = await store.listEgressLog(org, { afterSeq: page[9]!.seq, decision: "denied", limit: 2 });
    expect(after.map((e) => e.detail)).toEqual(["flow-11", "flow-13"]);
    expect(await store.listEgressLog(org, { since: 2498, sandboxId: "sbx_egress" })).toHaveLength(2);
    await store.updateEgressBytes([
      { sandboxId: "sbx_egress", detail: "flow-0", bytesOut: 10, bytesIn: 5_000_000_000 },
    ]);
    expect((await store.listEgressLog(org, { limit: 1 }))[0]).toMatchObject({ bytesOut: 10, bytesIn: 5_000_000_000 });
    await store.purgeEgressLog(2000);
    expect(await store.listEgressLog(org, { limit: 2000 })).toHaveLength(500);
  });

  it("keeps U+FFFD where JSON held a NUL (PostgreSQL's jsonb cannot hold one)", async () => {
    const s = await store.insertSandbox(
      sandbox(orgId, { metadata: { "k\0": "a\0b", slash: "\\u0000" } }),
      1000,
      NO_QUOTA,
      ANY_ROOM,
    );
    expect((await store.getSandbox(s.id))?.metadata).toEqual({ "k\uFFFD": "a\uFFFDb", slash: "\\u0000" });
  });

  it("registers its node with a new epoch each time, renews the lease only for that epoch, and fences a lost node", async () => {
    const registration = {
      id: store.nodeId,
      url: "http://127.0.0.1:1",
      capacity: { vcpus: 2, memoryMb: 4096, diskMb: 10_000, sandboxes: 100 },
      labels: { zone: "a" },
      version: "test",
      startedAt: Date.now(),
    };
    const first = await store.registerNode(registration, 10_000);
    expect(first).toMatchObject({ ...registration, state: "ready" });
    expect(first.leaseExpiresAt).toBeGreaterThan(Date.now() + 5_000);
    const again = await store.registerNode({ ...registration, url: "http://127.0.0.1:2" }, 10_000);
    expect(again.epoch).toBe(first.epoch + 1);
    expect(again.url).toBe("http://127.0.0.1:2");
    // The process that held the old epoch is fenced; the new one renews.
    expect(await store.renewNodeLease(store.nodeId, first.epoch, 10_000)).toBeUndefined();
    expect(await store.renewNodeLease(store.nodeId, again.epoch, 10_000)).toMatchObject({ epoch: again.epoch });
    // A drained node registering again stays drained (an operator's decision outlives restarts).
    await store.setNodeState(store.nodeId, "draining");
    expect((await store.registerNode(registration, 10_000)).state).toBe("draining");
    // A node declared lost cannot renew; registering again brings it back, ready.
    const lost = await store.setNodeState(store.nodeId, "lost");
    expect(await store.renewNodeLease(store.nodeId, lost!.epoch, 10_000)).toBeUndefined();
    const back = await store.registerNode(registration, 10_000);
    expect(back).toMatchObject({ state: "ready", epoch: lost!.epoch + 1 });
    expect((await store.listNodes()).map((n) => n.id)).toEqual([store.nodeId]);

    const s = await store.insertSandbox(sandbox(orgId), 100, NO_QUOTA, ANY_ROOM);
    expect(s.nodeId).toBe(store.nodeId);
    expect(await store.sandboxOwner(s.id)).toEqual({
      nodeId: store.nodeId,
      url: registration.url,
      state: "ready",
      leaseLive: true,
    });
    expect(await store.sandboxOwner("sbx_nope")).toBeUndefined();
  });

  it("holds its node to capacity × overcommit, whichever process inserts; paused sandboxes keep only disk and a slot", async () => {
    const db = await backend.fresh();
    const [one, two] = [await db.open(), await db.open()];
    try {
      const org = (await one.ensureOrg("capacity")).id;
      const capacity = { vcpus: 2, memoryMb: 2048, diskMb: 10_000, sandboxes: 3 };
      const overcommit = { cpu: 2, memory: 1, disk: 1 };
      // Not registered: nothing is known to check against.
      await one.updateSandbox((await one.insertSandbox(sandbox(org), 1000, NO_QUOTA, overcommit)).id, {
        status: "destroyed",
        netIndex: null,
      });
      await one.registerNode(
        { id: one.nodeId, url: "http://127.0.0.1:1", capacity, labels: {}, version: "t", startedAt: 0 },
        60_000,
      );

      const small = { vcpus: 1, memoryMb: 512, diskMb: 1000 };
      const { values, errors } = await race(8, (i) =>
        (i % 2 ? one : two).insertSandbox(sandbox(org, small), 1000, NO_QUOTA, overcommit),
      );
      expect(values).toHaveLength(3);
      expect(errors).toHaveLength(5);
      for (const e of errors) expect(e).toBeInstanceOf(NoCapacityError);
      expect(errors[0]).toMatchObject({
        nodeId: one.nodeId,
        shortfall: { resource: "sandboxes", allocatable: 3, allocated: 3, requested: 1 },
      });
      const [load] = await one.nodeLoads();
      expect(load).toMatchObject({
        node: { id: one.nodeId, capacity },
        leaseLive: true,
        allocated: { vcpus: 3, memoryMb: 1536, diskMb: 3000, sandboxes: 3 },
      });

      // A paused sandbox gives back its vCPUs and memory, keeps its disk and its slot.
      await one.updateSandbox(values[0]!.id, { status: "paused" });
      await one.updateSandbox(values[1]!.id, { status: "destroyed", netIndex: null });
      expect((await one.nodeLoads())[0]!.allocated).toEqual({ vcpus: 1, memoryMb: 512, diskMb: 2000, sandboxes: 2 });
      const big = { vcpus: 3, memoryMb: 1536, diskMb: 1000 };
      expect(await one.insertSandbox(sandbox(org, big), 1000, NO_QUOTA, overcommit)).toMatchObject({ vcpus: 3 });
      await expect(one.insertSandbox(sandbox(org, small), 1000, NO_QUOTA, overcommit)).rejects.toMatchObject({
        shortfall: { resource: "sandboxes" },
      });
    } finally {
      await one.close();
      await two.close();
    }
  });

  it("counts each node's sandboxes by status and what they hold, and changes a node's state only from the states given", async () => {
    const loadOrg = (await store.ensureOrg("load-org")).id;
    const before = (await store.nodeUsage()).find((l) => l.nodeId === store.nodeId);
    const running = await store.insertSandbox(
      sandbox(loadOrg, { status: "running", vcpus: 2, memoryMb: 512 }),
      1000,
      NO_QUOTA,
      ANY_ROOM,
    );
    await store.insertSandbox(
      sandbox(loadOrg, { status: "paused", vcpus: 4, memoryMb: 2048 }),
      1000,
      NO_QUOTA,
      ANY_ROOM,
    );
    const after = (await store.nodeUsage()).find((l) => l.nodeId === store.nodeId)!;
    expect((after.sandboxes.running ?? 0) - (before?.sandboxes.running ?? 0)).toBe(1);
    expect((after.sandboxes.paused ?? 0) - (before?.sandboxes.paused ?? 0)).toBe(1);
    // A paused sandbox holds no vCPUs or memory of the node.
    expect(after.vcpus - (before?.vcpus ?? 0)).toBe(2);
    expect(after.memoryMb - (before?.memoryMb ?? 0)).toBe(512);
    await store.updateSandbox(running.id, { status: "destroyed" });

    const registration = {
      id: store.nodeId,
      url: "http://127.0.0.1:1",
      capacity: { vcpus: 2, memoryMb: 4096, diskMb: 10_000, sandboxes: 100 },
      labels: {},
      version: "test",
      startedAt: Date.now(),
    };
    await store.registerNode(registration, 10_000);
    expect(await store.setNodeState(store.nodeId, "draining", ["ready"])).toMatchObject({ state: "draining" });
    expect(await store.setNodeState(store.nodeId, "ready", ["lost"])).toBeUndefined();
    expect((await store.getNode(store.nodeId))?.state).toBe("draining");
    expect(await store.setNodeState(store.nodeId, "ready", ["draining"])).toMatchObject({ state: "ready" });
  });

  it("keeps everything across a reopen, without running its migrations again", async () => {
    const s = await store.insertSandbox(sandbox(orgId), 1000, NO_QUOTA, ANY_ROOM);
    const second = await reopen();
    try {
      expect(await second.getSandbox(s.id)).toEqual(s);
      expect((await second.ensureOrg("acme")).id).toBe(orgId);
    } finally {
      await second.close();
    }
  });
});

describe("PostgreSQL store held by a server", () => {
  it("refuses a second server as the same node until the first lets go; other nodes start at once", async () => {
    const url = await cluster.createDatabase("held");
    const first = await PgStore.open(url, { nodeId: "n1", holdNode: true });
    await expect(PgStore.open(url, { nodeId: "n1", holdNode: true, holdWaitMs: 300 })).rejects.toThrow(
      /another Sandpit server is running as node n1/,
    );
    const other = await PgStore.open(url, { nodeId: "n2", holdNode: true, holdWaitMs: 300 });
    await other.close();
    // Tools that only read or add keys are not servers: they may open it meanwhile.
    const tool = await PgStore.open(url);
    await tool.close();
    await first.close();
    const second = await PgStore.open(url, { nodeId: "n1", holdNode: true, holdWaitMs: 300 });
    await second.close();
  });
});

describe("PostgreSQL store shared by nodes", () => {
  it("gives each node its own network slots and its own sandboxes to supervise", async () => {
    const url = await cluster.createDatabase("nodes");
    const a = await PgStore.open(url, { nodeId: "node-a" });
    const b = await PgStore.open(url, { nodeId: "node-b" });
    try {
      const orgId = (await a.ensureOrg("acme")).id;
      const [onA, onB] = await Promise.all([
        a.insertSandbox(sandbox(orgId), 10, NO_QUOTA, ANY_ROOM),
        b.insertSandbox(sandbox(orgId), 10, NO_QUOTA, ANY_ROOM),
      ]);
      // Slot 0 on both: each node has its own subnet.
      expect([onA.nodeId, onA.netIndex, onB.nodeId, onB.netIndex]).toEqual(["node-a", 0, "node-b", 0]);
      expect((await a.sandboxesInStatus(["creating"])).map((s) => s.id)).toEqual([onA.id]);
      expect((await b.sandboxesInStatus(["creating"])).map((s) => s.id)).toEqual([onB.id]);
      // Lists of an organisation see every node's sandboxes.
      expect((await b.listSandboxes(orgId, {})).map((s) => s.id).sort()).toEqual([onA.id, onB.id].sort());
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("moves a paused sandbox to exactly one node, only once its node stopped serving, with a slot of the new node", async () => {
    const url = await cluster.createDatabase("moves");
    const [a, b, c] = await Promise.all(["node-a", "node-b", "node-c"].map((nodeId) => PgStore.open(url, { nodeId })));
    try {
      const registration = (id: string) => ({
        id,
        url: `http://${id}`,
        capacity: { vcpus: 2, memoryMb: 2048, diskMb: 10_000, sandboxes: 100 },
        labels: {},
        version: "test",
        startedAt: Date.now(),
      });
      for (const store of [a!, b!, c!]) await store.registerNode(registration(store.nodeId), 60_000);
      const orgId = (await a!.ensureOrg("acme")).id;
      const onA = await a!.insertSandbox(sandbox(orgId, { status: "paused" }), 10, NO_QUOTA, ANY_ROOM);
      // Node B holds slot 0 already: the moved sandbox takes its next free one.
      await b!.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);

      // Node A is ready with a live lease: nobody takes its sandbox.
      expect(await b!.moveSandboxHere(onA.id, "node-a", 10)).toBeUndefined();
      await a!.setNodeState("node-a", "draining");
      // Two nodes at once: one takes it.
      const results = await Promise.all([b!, c!].map((store) => store.moveSandboxHere(onA.id, "node-a", 10)));
      const taken = results.filter((r) => r !== undefined);
      expect(taken).toHaveLength(1);
      const winner = taken[0]!;
      expect(winner.netIndex).toBe(winner.nodeId === "node-b" ? 1 : 0);
      expect(await a!.sandboxOwner(onA.id)).toMatchObject({ nodeId: winner.nodeId });
      const moved = (await a!.listEvents(orgId, { sandboxId: onA.id, order: "asc", limit: 10 })).filter(
        (e) => e.type === "sandbox.moved",
      );
      expect(moved.map((e) => e.data)).toEqual([{ status: "paused", from: "node-a", to: winner.nodeId }]);

      // Only a paused sandbox moves; and a lease that ran out counts like a lost node.
      const running = await c!.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);
      await c!.renewNodeLease("node-c", (await c!.getNode("node-c"))!.epoch, -1);
      expect(await b!.moveSandboxHere(running.id, "node-c", 10)).toBeUndefined();
      const pausedOnC = await c!.insertSandbox(sandbox(orgId, { status: "paused" }), 10, NO_QUOTA, ANY_ROOM);
      expect(await b!.moveSandboxHere(pausedOnC.id, "node-c", 10)).toMatchObject({ nodeId: "node-b" });
    } finally {
      await Promise.all([a!, b!, c!].map((store) => store.close()));
    }
  });
});

describe("PostgreSQL store of a cluster", () => {
  const registration = (id: string) => ({
    id,
    url: `http://${id}.invalid`,
    capacity: { vcpus: 2, memoryMb: 4096, diskMb: 10_000, sandboxes: 100 },
    labels: {},
    version: "test",
    startedAt: Date.now(),
  });
  const expire = async (url: string, id: string) => {
    // As if the node had stopped renewing a while ago (the database's clock judges leases).
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query("UPDATE nodes SET lease_expires_at = lease_expires_at - 60000 WHERE id = $1", [id]);
    await client.end();
  };

  it("refuses a fenced node's writes about its sandboxes once its lease ran out, in the write itself", async () => {
    const url = await cluster.createDatabase("fencing");
    const a = await PgStore.open(url, { nodeId: "node-a" });
    const b = await PgStore.open(url, { nodeId: "node-b" });
    try {
      const orgId = (await a.ensureOrg("acme")).id;
      a.fence((await a.registerNode(registration("node-a"), 10_000)).epoch);
      b.fence((await b.registerNode(registration("node-b"), 10_000)).epoch);
      const onA = await a.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);
      const onB = await b.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);
      expect(await a.updateSandbox(onA.id, { metadata: { k: "1" } })).toMatchObject({ metadata: { k: "1" } });

      await expire(url, "node-a");
      await expect(a.updateSandbox(onA.id, { metadata: { k: "late" } })).rejects.toBeInstanceOf(NodeFencedError);
      await expect(a.updateSandbox(onA.id, { status: "paused" }, ["running"])).rejects.toBeInstanceOf(NodeFencedError);
      await expect(a.insertSandbox(sandbox(orgId), 10, NO_QUOTA, ANY_ROOM)).rejects.toBeInstanceOf(NodeFencedError);
      expect(await b.getSandbox(onA.id)).toMatchObject({ status: "running", metadata: { k: "1" } });
      // A status condition that does not hold is not the lease's doing: undefined, as always.
      expect(await a.updateSandbox(onA.id, { status: "running" }, ["paused"])).toBeUndefined();
      // Other nodes' sandboxes, and the other nodes, are not concerned.
      expect(await b.updateSandbox(onB.id, { metadata: { k: "b" } })).toMatchObject({ metadata: { k: "b" } });

      // Registered again: a new epoch, and its writes apply again.
      a.fence((await a.registerNode(registration("node-a"), 10_000)).epoch);
      expect(await a.updateSandbox(onA.id, { metadata: { k: "2" } })).toMatchObject({ metadata: { k: "2" } });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("declares a node lost once, with its running sandboxes (one event each) but not its paused ones", async () => {
    const url = await cluster.createDatabase("lost_nodes");
    const a = await PgStore.open(url, { nodeId: "node-a" });
    const b = await PgStore.open(url, { nodeId: "node-b" });
    try {
      const orgId = (await a.ensureOrg("acme")).id;
      const epochA = (await a.registerNode(registration("node-a"), 10_000)).epoch;
      a.fence(epochA);
      b.fence((await b.registerNode(registration("node-b"), 10_000)).epoch);
      const running = await a.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);
      const creating = await a.insertSandbox(sandbox(orgId, { status: "creating" }), 10, NO_QUOTA, ANY_ROOM);
      const paused = await a.insertSandbox(sandbox(orgId, { status: "paused" }), 10, NO_QUOTA, ANY_ROOM);
      const onB = await b.insertSandbox(sandbox(orgId, { status: "running" }), 10, NO_QUOTA, ANY_ROOM);
      await a.insertCommand({
        id: "cmd_lost",
        sandboxId: running.id,
        argv: ["sleep", "9"],
        cwd: "/",
        background: true,
        status: "running",
        pid: 1,
        exitCode: null,
        timedOut: false,
        startedAt: Date.now(),
        finishedAt: null,
      });

      // Within its lease (and its grace) a node is not lost.
      expect(await b.declareLostNodes(1000)).toEqual([]);
      await expire(url, "node-a");
      // No node declares itself lost: a node that runs the job is alive.
      expect(await a.declareLostNodes(1000)).toEqual([]);
      const [lost, ...more] = await b.declareLostNodes(1000);
      expect(more).toEqual([]);
      expect(lost!.node).toMatchObject({ id: "node-a", state: "lost", epoch: epochA });
      expect(lost!.sandboxIds).toEqual([running.id, creating.id].sort());
      expect(await b.declareLostNodes(1000)).toEqual([]);

      expect(await b.getSandbox(running.id)).toMatchObject({ status: "error", reason: "node_lost", netIndex: null });
      expect(await b.getSandbox(creating.id)).toMatchObject({ status: "error", reason: "node_lost" });
      expect(await b.getSandbox(paused.id)).toMatchObject({ status: "paused" });
      expect(await b.getSandbox(onB.id)).toMatchObject({ status: "running" });
      expect((await b.getCommand(running.id, "cmd_lost"))?.status).toBe("lost");
      const errors = await b.listEvents(orgId, { types: ["sandbox.error"], order: "asc", limit: 100 });
      expect(errors.map((e) => [e.sandboxId, e.data.reason, e.data.node, e.data.previousStatus]).sort()).toEqual(
        [
          [running.id, "node_lost", "node-a", "running"],
          [creating.id, "node_lost", "node-a", "creating"],
        ].sort(),
      );
      // The lost node's late writes are refused, whatever it thought the sandbox's status was.
      await expect(a.updateSandbox(running.id, { metadata: { late: "yes" } })).rejects.toBeInstanceOf(NodeFencedError);
      expect(await a.renewNodeLease("node-a", epochA, 10_000)).toBeUndefined();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("gives a cluster lease to one node at a time, and to another once it ran out or its holder was lost", async () => {
    const url = await cluster.createDatabase("cluster_leases");
    const [a, b] = await Promise.all([
      PgStore.open(url, { nodeId: "node-a" }),
      PgStore.open(url, { nodeId: "node-b" }),
    ]);
    try {
      await a.registerNode(registration("node-a"), 10_000);
      await b.registerNode(registration("node-b"), 10_000);
      const takes = await Promise.all([a, b, a, b].map((s) => s.holdClusterLease("jobs", 10_000)));
      expect(takes.filter(Boolean).length).toBe(2);
      const holder = takes[0] ? a : b;
      const other = holder === a ? b : a;
      expect(await holder.holdClusterLease("jobs", 10_000)).toBe(true);
      expect(await other.holdClusterLease("jobs", 10_000)).toBe(false);
      // Another lease is another question.
      expect(await other.holdClusterLease("other", 10_000)).toBe(true);
      // Run out: the other node takes it.
      expect(await holder.holdClusterLease("jobs", 1)).toBe(true);
      await new Promise((r) => setTimeout(r, 20));
      expect(await other.holdClusterLease("jobs", 10_000)).toBe(true);
      expect(await holder.holdClusterLease("jobs", 10_000)).toBe(false);
      // A holder whose own node lease ran out cannot keep it.
      await expire(url, other.nodeId);
      expect(await other.holdClusterLease("jobs", 10_000)).toBe(false);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
