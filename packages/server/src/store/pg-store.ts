import type { SandboxStatus } from "@sandpit/contract";
import pg from "pg";
import type {
  ClaimedDelivery,
  CommandRecord,
  DeliveryAttemptRecord,
  DesktopStreamRecord,
  EgressLogFilter,
  EgressLogRecord,
  EventFilter,
  EventRecord,
  IdempotencyRecord,
  NodeCapacity,
  NodeLoad,
  NodeRecord,
  NodeUsage,
  OrgQuota,
  OrgRecord,
  Overcommit,
  ResourceRequest,
  SandboxOwner,
  SandboxRecord,
  SnapshotRecord,
  VolumeRecord,
  WarmPoolRecord,
  WebhookRecord,
} from "../domain/index.js";
import {
  NODE_BOUND_STATUSES,
  NODE_LOST_REASON,
  NodeFencedError,
  StoreUnavailableError,
  VolumeMissingError,
  VolumeNameTakenError,
} from "../domain/index.js";
import {
  checkoutEvent,
  type EventDraft,
  movedEvent,
  sandboxTransitionEvents,
  snapshotEvents,
  type TransitionCause,
} from "../domain/lifecycle-events.js";
import { randomBase32 } from "../lib/ids.js";
import { PgEvents, pgEventsSchema } from "./pg-events.js";
import {
  ADVISORY_LOCKS,
  all,
  createPool,
  first,
  inTransaction,
  lockUntilCommit,
  type Queryable,
  run,
} from "./pg-sql.js";
import {
  type AllocationRow,
  allocationFromRow,
  allocationsSql,
  allocationsValues,
  assertNodeHasRoom,
  assertWithinQuota,
  type CommandRow,
  commandColumns,
  commandFromRow,
  commandInsertSql,
  commandInsertValues,
  type DesktopStreamRow,
  desktopStreamFromRow,
  desktopStreamSql,
  type EgressLogRow,
  egressFromRow,
  egressInsertSql,
  egressInsertValues,
  egressListWhere,
  type IdempotencyRow,
  idempotencyFromRow,
  lowestFreeSlot,
  type NodeRow,
  type NodeUsageRow,
  nodeAllocationSql,
  nodeAllocationValues,
  nodeFromRow,
  nodeRegistrationValues,
  nodeUsageFromRows,
  nodeUsageSql,
  type OrgRow,
  orgByKeySql,
  orgFromRow,
  type QuotaRow,
  quotaFromRow,
  quotaSql,
  quotaUpsertSql,
  quotaUsageSql,
  quotaUsageValues,
  type SandboxRow,
  sandboxColumns,
  sandboxFromRow,
  sandboxInsert,
  sandboxListWhere,
  setClause,
  toJsonText,
  type VolumeRow,
  volumeFromRow,
} from "./sql-rows.js";
import type { LostNode, NodeRegistration, SandboxFilter, SandboxPatch, Store } from "./store.js";

/**
 * Schema versions, applied in order; `sandpit_migrations` records which ran. The tables and columns are
 * those of the SQLite store (so both share their row mappers), with PostgreSQL's types: jsonb for JSON,
 * boolean for flags, bigint for times in ms.
 */
const migrations = [
  `CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL);
   CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id),
     label TEXT NOT NULL, created_at BIGINT NOT NULL);
   CREATE TABLE org_quotas (org_id TEXT PRIMARY KEY REFERENCES orgs(id), max_sandboxes INTEGER,
     max_vcpus INTEGER, max_memory_mb INTEGER);
   CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), status TEXT NOT NULL, reason TEXT,
     template TEXT NOT NULL, vcpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL, disk_mb INTEGER NOT NULL,
     env_json JSONB NOT NULL, metadata_json JSONB NOT NULL, cwd TEXT NOT NULL, timeout_ms BIGINT NOT NULL,
     network_policy_json JSONB NOT NULL, timeout_action TEXT NOT NULL, lifecycle TEXT NOT NULL,
     idle_timeout_ms BIGINT, auto_resume BOOLEAN NOT NULL, ports_json JSONB NOT NULL, public_ports BOOLEAN NOT NULL,
     all_ports BOOLEAN NOT NULL, traffic_token TEXT NOT NULL, net_index INTEGER, agent_token TEXT NOT NULL,
     user_name TEXT, main_command_id TEXT, volumes_json JSONB NOT NULL, created_at BIGINT NOT NULL,
     started_at BIGINT, expires_at BIGINT, destroyed_at BIGINT);
   CREATE UNIQUE INDEX sandboxes_net_index ON sandboxes (net_index) WHERE net_index IS NOT NULL;
   CREATE INDEX sandboxes_org_status ON sandboxes (org_id, status);
   CREATE INDEX sandboxes_status ON sandboxes (status);
   CREATE TABLE commands (
     id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
     argv_json JSONB NOT NULL, cwd TEXT NOT NULL, background BOOLEAN NOT NULL, status TEXT NOT NULL,
     pid INTEGER, exit_code INTEGER, timed_out BOOLEAN NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT);
   CREATE INDEX commands_sandbox ON commands (sandbox_id);
   CREATE TABLE idempotency_keys (
     org_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, owner TEXT,
     response_status INTEGER, response_body TEXT, created_at BIGINT NOT NULL, PRIMARY KEY (org_id, key));
   CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
   CREATE TABLE snapshots (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), json JSONB NOT NULL,
     created_at BIGINT NOT NULL);
   CREATE INDEX snapshots_org ON snapshots (org_id);
   CREATE TABLE warm_pools (id TEXT PRIMARY KEY, json JSONB NOT NULL);
   CREATE TABLE egress_log (
     seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id TEXT NOT NULL, sandbox_id TEXT NOT NULL,
     at BIGINT NOT NULL, protocol TEXT NOT NULL, ip TEXT, port INTEGER, domain TEXT, decision TEXT NOT NULL,
     rule TEXT NOT NULL, bytes_out BIGINT, bytes_in BIGINT, detail TEXT);
   CREATE INDEX egress_log_sandbox ON egress_log (sandbox_id, seq);
   CREATE INDEX egress_log_org ON egress_log (org_id, seq);
   CREATE INDEX egress_log_at ON egress_log (at);
   CREATE INDEX egress_log_flow ON egress_log (sandbox_id, detail);
   CREATE TABLE volumes (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
     size_mb INTEGER NOT NULL, created_at BIGINT NOT NULL, UNIQUE (org_id, name));
   ${pgEventsSchema}`,
  `ALTER TABLE sandboxes ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
   DROP INDEX sandboxes_net_index;
   CREATE UNIQUE INDEX sandboxes_net_index ON sandboxes (node_id, net_index) WHERE net_index IS NOT NULL;
   CREATE INDEX sandboxes_node_status ON sandboxes (node_id, status);
   CREATE TABLE nodes (
     id TEXT PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL, epoch BIGINT NOT NULL,
     lease_expires_at BIGINT NOT NULL, capacity_json JSONB NOT NULL, labels_json JSONB NOT NULL,
     version TEXT NOT NULL, started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL);
   CREATE TABLE shared_keys (name TEXT PRIMARY KEY, key BYTEA NOT NULL);`,
  `CREATE TABLE cluster_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL);`,
  `ALTER TABLE sandboxes ADD COLUMN hibernate BOOLEAN NOT NULL DEFAULT TRUE;`,
  `CREATE TABLE desktop_streams (
     id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
     view_only BOOLEAN NOT NULL, token TEXT NOT NULL, command_id TEXT NOT NULL, started_at BIGINT NOT NULL,
     stopped_at BIGINT);
   CREATE UNIQUE INDEX desktop_streams_live ON desktop_streams (sandbox_id) WHERE stopped_at IS NULL;`,
  `ALTER TABLE sandboxes ADD COLUMN desktop_json JSONB;`,
];

/** Statuses of a sandbox that still lives on its node (what reads during an outage may answer). */
const LIVE_STATUSES: SandboxStatus[] = ["creating", "running", "pausing", "paused", "resuming"];

/** The database's clock in ms: leases are judged by one clock, whatever the nodes' clocks say. */
const DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/** Egress log entries per INSERT (12 parameters each; PostgreSQL takes at most 65535). */
const EGRESS_ROWS_PER_INSERT = 1000;

export interface PgStoreOptions {
  /** The node this store works for (see Store.nodeId). */
  nodeId?: string;
  /**
   * Hold the node's identity for as long as this process runs (a server does): a second server started
   * with the same node id waits, then is refused — two processes would each take the other's sandboxes,
   * which it cannot see on its host, for dead.
   */
  holdNode?: boolean;
  /** How long to wait for another process to let go of the node (a restart after a crash). */
  holdWaitMs?: number;
}

/** The store in a PostgreSQL database (`SANDPIT_DATABASE_URL`), with the same semantics as the SQLite store. */
export class PgStore implements Store {
  private readonly events: PgEvents;
  /** The lease epoch this node's writes about its sandboxes carry (see `fence`); none before it registered. */
  private epoch: number | undefined;
  /**
   * This node's live sandboxes as last read or written here. While the database is unreachable, reads of
   * them answer from it: this node is the one that changes them (nobody declares a node lost while the
   * database is down), so running sandboxes keep serving what needs no write.
   */
  private readonly lastKnown = new Map<string, SandboxRecord>();

  private constructor(
    private readonly pool: pg.Pool,
    readonly nodeId: string,
    /** The connection that holds the node's lock (servers' stores). */
    private holder: pg.Client | undefined,
    private readonly url: string,
  ) {
    this.events = new PgEvents(pool);
    this.keepHolding();
  }

  private closed = false;

  /**
   * The node's lock lives as long as its connection: when the database restarts, the connection ends and
   * the lock with it. It is taken again, on a new connection, once the database is back.
   */
  private keepHolding() {
    const held = this.holder;
    held?.once("end", async () => {
      while (!this.closed && this.holder === held) {
        await new Promise((r) => setTimeout(r, 1000));
        if (this.closed) return;
        const again = await holdNode(this.url, this.nodeId, 0).catch(() => undefined);
        if (!again) continue;
        if (this.closed) {
          await again.end().catch(() => undefined);
          return;
        }
        this.holder = again;
        this.keepHolding();
      }
    });
  }

  /** Connects, brings the schema up to date, and takes the node for this process when `holdNode`. */
  static async open(url: string, opts: PgStoreOptions = {}): Promise<PgStore> {
    const pool = createPool(url);
    const nodeId = opts.nodeId ?? "local";
    let holder: pg.Client | undefined;
    try {
      if (opts.holdNode) holder = await holdNode(url, nodeId, opts.holdWaitMs ?? 15_000);
      await migrate(pool);
      // Sandboxes of a database from before nodes existed belong to the first node that starts on it.
      await run(pool, "UPDATE sandboxes SET node_id = ? WHERE node_id = ''", [nodeId]);
      return new PgStore(pool, nodeId, holder, url);
    } catch (e) {
      await holder?.end().catch(() => undefined);
      await pool.end();
      throw e;
    }
  }

  private transaction<T>(work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, work);
  }

  /**
   * Runs `change` in a transaction with the events it returns, so that a change is never committed
   * without its events (and their webhook deliveries); listeners hear of them after the commit.
   */
  private async withEvents<T>(change: (tx: pg.PoolClient) => Promise<{ result: T; events: EventDraft[] }>) {
    const { result, recorded } = await this.transaction(async (tx) => {
      const { result, events } = await change(tx);
      return { result, recorded: await this.events.record(tx, events) };
    });
    this.events.notify(recorded);
    return result;
  }

  async registerNode(node: NodeRegistration, leaseTtlMs: number): Promise<NodeRecord> {
    const row = await first<NodeRow>(
      this.pool,
      `INSERT INTO nodes (id, url, capacity_json, labels_json, version, started_at, state, epoch, lease_expires_at,
         heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', 1, ${DB_NOW} + ?, ${DB_NOW})
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, capacity_json = excluded.capacity_json,
         labels_json = excluded.labels_json, version = excluded.version, started_at = excluded.started_at,
         state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'ready' END, epoch = nodes.epoch + 1,
         lease_expires_at = excluded.lease_expires_at, heartbeat_at = excluded.heartbeat_at
       RETURNING *`,
      [...nodeRegistrationValues(node), leaseTtlMs],
    );
    return nodeFromRow(row!);
  }

  async renewNodeLease(id: string, epoch: number, leaseTtlMs: number): Promise<NodeRecord | undefined> {
    const row = await first<NodeRow>(
      this.pool,
      `UPDATE nodes SET lease_expires_at = ${DB_NOW} + ?, heartbeat_at = ${DB_NOW}
       WHERE id = ? AND epoch = ? AND state <> 'lost' RETURNING *`,
      [leaseTtlMs, id, epoch],
    );
    return row && nodeFromRow(row);
  }

  fence(epoch: number): void {
    this.epoch = epoch;
  }

  /**
   * The condition a write about a sandbox carries once the store is fenced: the sandbox is not this node's,
   * or this node still holds the lease of its epoch (not lost, not run out by the database's clock). It is
   * part of the write's own statement, so no state change of the node can come between check and write.
   */
  private leaseCondition(nodeColumn: string): { sql: string; values: unknown[] } {
    if (this.epoch === undefined) return { sql: "TRUE", values: [] };
    return {
      sql: `(${nodeColumn} <> ? OR EXISTS (SELECT 1 FROM nodes WHERE id = ? AND epoch = ? AND state <> 'lost'
        AND lease_expires_at > ${DB_NOW}))`,
      values: [this.nodeId, this.nodeId, this.epoch],
    };
  }

  /** Throws NodeFencedError unless this node holds its lease (for a transaction that writes a new row). */
  private async assertLeaseHeld(tx: pg.PoolClient): Promise<void> {
    const lease = this.leaseCondition("?::text");
    if (lease.values.length === 0) return;
    if (!(await first(tx, `SELECT 1 AS held WHERE ${lease.sql}`, [this.nodeId, ...lease.values]))) throw this.fenced();
  }

  private fenced(): NodeFencedError {
    return new NodeFencedError(this.nodeId, this.epoch ?? 0);
  }

  async getNode(id: string): Promise<NodeRecord | undefined> {
    const row = await first<NodeRow>(this.pool, "SELECT * FROM nodes WHERE id = ?", [id]);
    return row && nodeFromRow(row);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await all<NodeRow>(this.pool, "SELECT * FROM nodes ORDER BY id")).map(nodeFromRow);
  }

  async setNodeState(
    id: string,
    state: NodeRecord["state"],
    onlyIf?: NodeRecord["state"][],
  ): Promise<NodeRecord | undefined> {
    const row = await first<NodeRow>(
      this.pool,
      `UPDATE nodes SET state = ? WHERE id = ?${onlyIf ? " AND state = ANY(?)" : ""} RETURNING *`,
      onlyIf ? [state, id, onlyIf] : [state, id],
    );
    return row && nodeFromRow(row);
  }

  async nodeUsage(): Promise<NodeUsage[]> {
    return nodeUsageFromRows(await all<NodeUsageRow>(this.pool, nodeUsageSql));
  }

  async declareLostNodes(graceMs: number): Promise<LostNode[]> {
    return this.withEvents(async (tx) => {
      const nodes = await all<NodeRow>(
        tx,
        `UPDATE nodes SET state = 'lost' WHERE id <> ? AND state <> 'lost' AND lease_expires_at < ${DB_NOW} - ?
         RETURNING *`,
        [this.nodeId, graceMs],
      );
      const lost: LostNode[] = [];
      const events: EventDraft[] = [];
      const at = Date.now();
      for (const node of nodes.map(nodeFromRow)) {
        const before = await all<SandboxRow>(
          tx,
          "SELECT * FROM sandboxes WHERE node_id = ? AND status = ANY(?) ORDER BY id FOR UPDATE",
          [node.id, NODE_BOUND_STATUSES],
        );
        const after = await all<SandboxRow>(
          tx,
          `UPDATE sandboxes SET status = 'error', reason = ?, net_index = NULL WHERE node_id = ? AND status = ANY(?)
           RETURNING *`,
          [NODE_LOST_REASON, node.id, NODE_BOUND_STATUSES],
        );
        const ids = after.map((r) => r.id);
        await run(
          tx,
          "UPDATE commands SET status = 'lost', finished_at = ? WHERE sandbox_id = ANY(?) AND status = 'running'",
          [at, ids],
        );
        for (const a of after.map(sandboxFromRow)) {
          const b = before.find((r) => r.id === a.id);
          if (b) events.push(...sandboxTransitionEvents(sandboxFromRow(b), a, at, NODE_LOST_REASON));
        }
        lost.push({ node, sandboxIds: ids.sort() });
      }
      return { result: lost, events };
    });
  }

  async holdClusterLease(name: string, ttlMs: number): Promise<boolean> {
    // Only a node that holds its own lease may hold a cluster lease: a lost or stalled one cannot keep it.
    const row = await first<{ holder: string }>(
      this.pool,
      `INSERT INTO cluster_leases AS l (name, holder, expires_at)
       SELECT ?, id, ${DB_NOW} + ? FROM nodes WHERE id = ? AND state <> 'lost' AND lease_expires_at > ${DB_NOW}
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE l.holder = excluded.holder OR l.expires_at < ${DB_NOW}
       RETURNING holder`,
      [name, ttlMs, this.nodeId],
    );
    return row?.holder === this.nodeId;
  }

  async sandboxOwner(sandboxId: string): Promise<SandboxOwner | undefined> {
    const row = await first<{ node_id: string; url: string; state: NodeRecord["state"]; lease_live: boolean }>(
      this.pool,
      `SELECT s.node_id, n.url, n.state, n.lease_expires_at > ${DB_NOW} AS lease_live
       FROM sandboxes s JOIN nodes n ON n.id = s.node_id WHERE s.id = ?`,
      [sandboxId],
    );
    return row && { nodeId: row.node_id, url: row.url, state: row.state, leaseLive: row.lease_live };
  }

  async sharedKey(name: string, initial: Buffer): Promise<Buffer> {
    await run(this.pool, "INSERT INTO shared_keys (name, key) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [
      name,
      initial,
    ]);
    return (await first<{ key: Buffer }>(this.pool, "SELECT key FROM shared_keys WHERE name = ?", [name]))!.key;
  }

  async ensureOrg(name: string): Promise<OrgRecord> {
    await run(this.pool, "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING", [
      `org_${randomBase32(20)}`,
      name,
      Date.now(),
    ]);
    return orgFromRow((await first<OrgRow>(this.pool, "SELECT * FROM orgs WHERE name = ?", [name]))!);
  }

  async addApiKey(orgId: string, keyHash: string, label: string): Promise<void> {
    await run(
      this.pool,
      "INSERT INTO api_keys (key_hash, org_id, label, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
      [keyHash, orgId, label, Date.now()],
    );
  }

  async orgByApiKeyHash(keyHash: string): Promise<OrgRecord | undefined> {
    const row = await first<OrgRow>(this.pool, orgByKeySql, [keyHash]);
    return row && orgFromRow(row);
  }

  async countApiKeys(): Promise<number> {
    return (await first<{ n: number }>(this.pool, "SELECT count(*) AS n FROM api_keys"))!.n;
  }

  async insertSandbox(
    record: Omit<SandboxRecord, "netIndex" | "nodeId">,
    maxNetIndex: number,
    quota: OrgQuota,
    overcommit: Overcommit,
  ): Promise<SandboxRecord> {
    return this.transaction(async (tx) => {
      // A node whose lease ran out places nothing on itself: the cluster may be declaring it lost.
      await this.assertLeaseHeld(tx);
      await this.checkQuota(tx, record.orgId, quota, record.vcpus, record.memoryMb);
      await this.checkNodeRoom(tx, record, overcommit);
      for (const mount of record.volumes) {
        // FOR SHARE: a delete of the volume (FOR UPDATE) waits for this create, and then sees its sandbox.
        if (mount.volumeId && !(await first(tx, "SELECT 1 FROM volumes WHERE id = ? FOR SHARE", [mount.volumeId]))) {
          throw new VolumeMissingError(mount.volumeId);
        }
      }
      // Slots are per node (each node has its own subnet): creates on other nodes do not wait for this one.
      await run(tx, "SELECT pg_advisory_xact_lock(?::int, hashtext(?))", [ADVISORY_LOCKS.netSlots, this.nodeId]);
      const used = await all<{ net_index: number }>(
        tx,
        "SELECT net_index FROM sandboxes WHERE node_id = ? AND net_index IS NOT NULL ORDER BY net_index",
        [this.nodeId],
      );
      const full: SandboxRecord = {
        ...record,
        nodeId: this.nodeId,
        netIndex: lowestFreeSlot(
          used.map((r) => r.net_index),
          maxNetIndex,
        ),
      };
      const insert = sandboxInsert(full);
      await run(tx, insert.sql, insert.values);
      return full;
    }).then((full) => this.remember(full));
  }

  /**
   * Throws QuotaExceededError when one more sandbox of this size would go over. Locks the organisation
   * until commit, so that concurrent creates (and pool checkouts) for it count one after the other.
   */
  private async checkQuota(tx: pg.PoolClient, orgId: string, quota: OrgQuota, vcpus: number, memoryMb: number) {
    await run(tx, "SELECT 1 FROM orgs WHERE id = ? FOR UPDATE", [orgId]);
    const usage = (await first<{ sandboxes: number; vcpus: number; memory: number }>(
      tx,
      quotaUsageSql,
      quotaUsageValues(orgId),
    ))!;
    assertWithinQuota(quota, usage, vcpus, memoryMb);
  }

  /**
   * Throws NoCapacityError when this node cannot take one more sandbox of this size. Locks the node's row
   * until commit, so that creates placed on it from any node count one after the other.
   */
  private async checkNodeRoom(tx: pg.PoolClient, request: ResourceRequest, overcommit: Overcommit) {
    const node = await first<{ capacity_json: NodeCapacity }>(
      tx,
      "SELECT capacity_json FROM nodes WHERE id = ? FOR UPDATE",
      [this.nodeId],
    );
    const allocated = await first<AllocationRow>(tx, nodeAllocationSql, nodeAllocationValues(this.nodeId));
    assertNodeHasRoom(this.nodeId, node?.capacity_json, allocationFromRow(allocated), request, overcommit);
  }

  async nodeLoads(): Promise<NodeLoad[]> {
    const [nodes, allocations] = await Promise.all([
      all<NodeRow & { live: boolean }>(
        this.pool,
        `SELECT *, lease_expires_at > ${DB_NOW} AS live FROM nodes ORDER BY id`,
      ),
      all<AllocationRow>(this.pool, allocationsSql, allocationsValues),
    ]);
    return nodes.map((row) => ({
      node: nodeFromRow(row),
      leaseLive: row.live,
      allocated: allocationFromRow(allocations.find((a) => a.node_id === row.id)),
    }));
  }

  async getOrgQuota(orgId: string): Promise<OrgQuota> {
    return quotaFromRow(await first<QuotaRow>(this.pool, quotaSql, [orgId]));
  }

  async setOrgQuota(orgId: string, quota: OrgQuota): Promise<void> {
    await run(this.pool, quotaUpsertSql, [orgId, quota.maxSandboxes, quota.maxVcpus, quota.maxMemoryMb]);
  }

  async getSandbox(id: string): Promise<SandboxRecord | undefined> {
    try {
      const row = await first<SandboxRow>(this.pool, "SELECT * FROM sandboxes WHERE id = ?", [id]);
      if (!row) this.lastKnown.delete(id);
      return row && this.remember(sandboxFromRow(row));
    } catch (e) {
      const known = this.lastKnown.get(id);
      if (e instanceof StoreUnavailableError && known) return known;
      throw e;
    }
  }

  /** Keeps this node's live sandboxes for reads during an outage (see `lastKnown`). */
  private remember(record: SandboxRecord): SandboxRecord {
    if (record.nodeId === this.nodeId && LIVE_STATUSES.includes(record.status)) this.lastKnown.set(record.id, record);
    else this.lastKnown.delete(record.id);
    return record;
  }

  async listSandboxes(orgId: string, filter: SandboxFilter): Promise<SandboxRecord[]> {
    const where = sandboxListWhere(orgId, filter, "metadata_json ->> ?::text = ?");
    const rows = await all<SandboxRow>(
      this.pool,
      `SELECT * FROM sandboxes WHERE ${where.sql} ORDER BY created_at DESC, id LIMIT ?`,
      [...where.values, filter.limit ?? 1000],
    );
    return rows.map(sandboxFromRow);
  }

  async sandboxesInStatus(statuses: SandboxStatus[]): Promise<SandboxRecord[]> {
    const rows = await all<SandboxRow>(this.pool, "SELECT * FROM sandboxes WHERE node_id = ? AND status = ANY(?)", [
      this.nodeId,
      statuses,
    ]);
    return rows.map(sandboxFromRow);
  }

  async moveSandboxHere(id: string, from: string, maxNetIndex: number): Promise<SandboxRecord | undefined> {
    if (from === this.nodeId) return undefined;
    return this.withEvents(async (tx) => {
      await run(tx, "SELECT pg_advisory_xact_lock(?::int, hashtext(?))", [ADVISORY_LOCKS.netSlots, this.nodeId]);
      const used = await all<{ net_index: number }>(
        tx,
        "SELECT net_index FROM sandboxes WHERE node_id = ? AND net_index IS NOT NULL ORDER BY net_index",
        [this.nodeId],
      );
      const slot = lowestFreeSlot(
        used.map((r) => r.net_index),
        maxNetIndex,
      );
      // The lease is judged by the database's clock, as the nodes renew it.
      const row = await first<SandboxRow>(
        tx,
        `UPDATE sandboxes SET node_id = ?, net_index = ? WHERE id = ? AND node_id = ? AND status = 'paused'
         AND NOT EXISTS (SELECT 1 FROM nodes WHERE id = ? AND state = 'ready' AND lease_expires_at > ${DB_NOW})
         RETURNING *`,
        [this.nodeId, slot, id, from, from],
      );
      if (!row) return { result: undefined, events: [] };
      const after = sandboxFromRow(row);
      return { result: after, events: [movedEvent(after, from, Date.now())] };
    });
  }

  async updateSandbox(
    id: string,
    patch: SandboxPatch,
    onlyIf?: SandboxStatus[],
    cause?: TransitionCause,
  ): Promise<SandboxRecord | undefined> {
    const set = setClause(patch, sandboxColumns);
    const condition = onlyIf?.length ? " AND status = ANY(?)" : "";
    const conditionValues = onlyIf?.length ? [onlyIf] : [];
    const lease = this.leaseCondition("node_id");
    // Every status change of every sandbox passes here: its lifecycle event is written with it.
    return this.withEvents(async (tx) => {
      const before = await first<SandboxRow>(tx, "SELECT * FROM sandboxes WHERE id = ? FOR UPDATE", [id]);
      const after = set.empty
        ? await first<SandboxRow>(tx, `SELECT * FROM sandboxes WHERE id = ?${condition}`, [id, ...conditionValues])
        : await first<SandboxRow>(
            tx,
            `UPDATE sandboxes SET ${set.sql} WHERE id = ?${condition} AND ${lease.sql} RETURNING *`,
            [...set.values, id, ...conditionValues, ...lease.values],
          );
      // The row is locked: when its status allowed the write and nothing was written, the lease refused it.
      if (before && !after && !set.empty && (!onlyIf?.length || onlyIf.includes(before.status))) throw this.fenced();
      if (!before || !after) return { result: undefined, events: [] };
      const [b, a] = [sandboxFromRow(before), sandboxFromRow(after)];
      return { result: a, events: sandboxTransitionEvents(b, a, Date.now(), cause) };
    }).then((updated) => updated && this.remember(updated));
  }

  async purgeDestroyed(before: number): Promise<number> {
    return run(this.pool, "DELETE FROM sandboxes WHERE status = 'destroyed' AND destroyed_at < ?", [before]);
  }

  async insertCommand(c: CommandRecord): Promise<void> {
    await run(this.pool, commandInsertSql, commandInsertValues(c));
  }

  async updateCommand(id: string, patch: Partial<Omit<CommandRecord, "id" | "sandboxId">>): Promise<void> {
    const set = setClause(patch, commandColumns);
    if (set.empty) return;
    await run(this.pool, `UPDATE commands SET ${set.sql} WHERE id = ?`, [...set.values, id]);
  }

  async getCommand(sandboxId: string, id: string): Promise<CommandRecord | undefined> {
    const row = await first<CommandRow>(this.pool, "SELECT * FROM commands WHERE id = ? AND sandbox_id = ?", [
      id,
      sandboxId,
    ]);
    return row && commandFromRow(row);
  }

  async listCommands(sandboxId: string): Promise<CommandRecord[]> {
    const rows = await all<CommandRow>(
      this.pool,
      "SELECT * FROM commands WHERE sandbox_id = ? ORDER BY started_at, id",
      [sandboxId],
    );
    return rows.map(commandFromRow);
  }

  async markRunningCommandsLost(sandboxId: string): Promise<void> {
    await run(
      this.pool,
      "UPDATE commands SET status = 'lost', finished_at = ? WHERE sandbox_id = ? AND status = 'running'",
      [Date.now(), sandboxId],
    );
  }

  async claimIdempotencyKey(
    r: Omit<IdempotencyRecord, "responseStatus" | "responseBody">,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }> {
    // A key that was there but released before it could be read is claimed on the next round.
    for (;;) {
      const inserted = await run(
        this.pool,
        `INSERT INTO idempotency_keys (org_id, key, request_hash, owner, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (org_id, key) DO NOTHING`,
        [r.orgId, r.key, r.requestHash, r.owner, r.createdAt],
      );
      if (inserted === 1) return { claimed: true };
      const existing = await this.getIdempotencyKey(r.orgId, r.key);
      if (existing) return { claimed: false, existing };
    }
  }

  async takeOverIdempotencyKey(orgId: string, key: string, from: string | null, owner: string): Promise<boolean> {
    const changed = await run(
      this.pool,
      `UPDATE idempotency_keys SET owner = ? WHERE org_id = ? AND key = ? AND owner IS NOT DISTINCT FROM ?
       AND response_status IS NULL`,
      [owner, orgId, key, from],
    );
    return changed === 1;
  }

  async completeIdempotencyKey(orgId: string, key: string, status: number, body: string): Promise<void> {
    await run(
      this.pool,
      "UPDATE idempotency_keys SET response_status = ?, response_body = ?, owner = NULL WHERE org_id = ? AND key = ?",
      [status, body, orgId, key],
    );
  }

  async releaseIdempotencyKey(orgId: string, key: string): Promise<void> {
    await run(this.pool, "DELETE FROM idempotency_keys WHERE org_id = ? AND key = ?", [orgId, key]);
  }

  async getIdempotencyKey(orgId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const row = await first<IdempotencyRow>(this.pool, "SELECT * FROM idempotency_keys WHERE org_id = ? AND key = ?", [
      orgId,
      key,
    ]);
    return row && idempotencyFromRow(row);
  }

  async purgeIdempotencyKeys(before: number): Promise<void> {
    await run(this.pool, "DELETE FROM idempotency_keys WHERE created_at < ?", [before]);
  }

  async checkoutPooled(
    poolOrgId: string,
    poolId: string,
    orgId: string,
    patch: SandboxPatch,
    quota: OrgQuota,
  ): Promise<SandboxRecord | undefined> {
    return this.withEvents(async (tx) => {
      // SKIP LOCKED: concurrent checkouts take different pooled sandboxes instead of queueing for one.
      const row = await first<SandboxRow>(
        tx,
        `SELECT * FROM sandboxes WHERE org_id = ? AND node_id = ? AND status = 'running'
         AND metadata_json ->> 'sandpit.pool' = ? ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [poolOrgId, this.nodeId, poolId],
      );
      if (!row) return { result: undefined, events: [] };
      await this.checkQuota(tx, orgId, quota, row.vcpus, row.memory_mb);
      const set = setClause({ ...patch, orgId }, { ...sandboxColumns, orgId: "org_id" });
      const lease = this.leaseCondition("node_id");
      const updated = await first<SandboxRow>(
        tx,
        `UPDATE sandboxes SET ${set.sql} WHERE id = ? AND ${lease.sql} RETURNING *`,
        [...set.values, row.id, ...lease.values],
      );
      if (!updated) throw this.fenced();
      const taken = sandboxFromRow(updated);
      return { result: taken, events: [checkoutEvent(taken, poolId, Date.now())] };
    }).then((taken) => taken && this.remember(taken));
  }

  async listWarmPools(): Promise<WarmPoolRecord[]> {
    const rows = await all<{ json: WarmPoolRecord }>(this.pool, "SELECT json FROM warm_pools ORDER BY id");
    return rows.map((r) => r.json);
  }

  async putWarmPool(p: WarmPoolRecord): Promise<void> {
    await run(
      this.pool,
      "INSERT INTO warm_pools (id, json) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET json = excluded.json",
      [p.id, toJsonText(p)],
    );
  }

  async deleteWarmPool(id: string): Promise<void> {
    await run(this.pool, "DELETE FROM warm_pools WHERE id = ?", [id]);
  }

  async insertSnapshot(record: SnapshotRecord): Promise<void> {
    await run(this.pool, "INSERT INTO snapshots (id, org_id, json, created_at) VALUES (?, ?, ?, ?)", [
      record.id,
      record.orgId,
      toJsonText(record),
      record.createdAt,
    ]);
  }

  async updateSnapshot(id: string, patch: Partial<Pick<SnapshotRecord, "status" | "sizeBytes">>): Promise<void> {
    await this.withEvents(async (tx) => {
      const row = await first<{ json: SnapshotRecord }>(tx, "SELECT json FROM snapshots WHERE id = ? FOR UPDATE", [id]);
      if (!row) return { result: undefined, events: [] };
      const after = { ...row.json, ...patch };
      await run(tx, "UPDATE snapshots SET json = ? WHERE id = ?", [toJsonText(after), id]);
      return { result: undefined, events: snapshotEvents(row.json, after, Date.now()) };
    });
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return (await first<{ json: SnapshotRecord }>(this.pool, "SELECT json FROM snapshots WHERE id = ?", [id]))?.json;
  }

  async listSnapshots(orgId: string): Promise<SnapshotRecord[]> {
    const rows = await all<{ json: SnapshotRecord }>(
      this.pool,
      "SELECT json FROM snapshots WHERE org_id = ? ORDER BY created_at DESC, id",
      [orgId],
    );
    return rows.map((r) => r.json);
  }

  async deleteSnapshot(id: string): Promise<void> {
    await run(this.pool, "DELETE FROM snapshots WHERE id = ?", [id]);
  }

  listEvents(orgId: string, filter: EventFilter): Promise<EventRecord[]> {
    return this.events.list(orgId, filter);
  }

  latestEventId(orgId: string): Promise<number> {
    return this.events.latestId(orgId);
  }

  purgeEvents(before: number): Promise<void> {
    return this.events.purge(before);
  }

  onEvents(listener: (events: EventRecord[]) => void): () => void {
    return this.events.onEvents(listener);
  }

  insertWebhook(record: WebhookRecord): Promise<void> {
    return this.events.insertWebhook(record);
  }

  getWebhook(id: string): Promise<WebhookRecord | undefined> {
    return this.events.getWebhook(id);
  }

  listWebhooks(orgId: string): Promise<WebhookRecord[]> {
    return this.events.webhooksOf(orgId);
  }

  deleteWebhook(id: string): Promise<void> {
    return this.events.deleteWebhook(id);
  }

  claimDueDeliveries(now: number, leaseUntil: number, limit: number): Promise<ClaimedDelivery[]> {
    return this.events.claimDue(now, leaseUntil, limit);
  }

  nextDeliveryDue(): Promise<number | undefined> {
    return this.events.nextDue();
  }

  recordDeliveryAttempt(attempt: DeliveryAttemptRecord): Promise<void> {
    return this.events.recordAttempt(attempt);
  }

  listDeliveryAttempts(webhookId: string, limit: number): Promise<DeliveryAttemptRecord[]> {
    return this.events.listAttempts(webhookId, limit);
  }

  async insertVolume(record: VolumeRecord): Promise<void> {
    const inserted = await run(
      this.pool,
      `INSERT INTO volumes (id, org_id, name, size_mb, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (org_id, name) DO NOTHING`,
      [record.id, record.orgId, record.name, record.sizeMb, record.createdAt],
    );
    if (inserted === 0) throw new VolumeNameTakenError(record.name);
  }

  async getVolume(id: string): Promise<VolumeRecord | undefined> {
    const row = await first<VolumeRow>(this.pool, "SELECT * FROM volumes WHERE id = ?", [id]);
    return row && volumeFromRow(row);
  }

  async getVolumeByName(orgId: string, name: string): Promise<VolumeRecord | undefined> {
    const row = await first<VolumeRow>(this.pool, "SELECT * FROM volumes WHERE org_id = ? AND name = ?", [orgId, name]);
    return row && volumeFromRow(row);
  }

  async listVolumes(orgId: string | undefined): Promise<VolumeRecord[]> {
    const rows =
      orgId === undefined
        ? await all<VolumeRow>(this.pool, "SELECT * FROM volumes ORDER BY created_at, id")
        : await all<VolumeRow>(this.pool, "SELECT * FROM volumes WHERE org_id = ? ORDER BY name", [orgId]);
    return rows.map(volumeFromRow);
  }

  volumeUsers(volumeId: string, statuses: SandboxStatus[]): Promise<string[]> {
    return this.volumeUsersNow(this.pool, volumeId, statuses);
  }

  private async volumeUsersNow(db: Queryable, volumeId: string, statuses: SandboxStatus[]): Promise<string[]> {
    const rows = await all<{ id: string }>(
      db,
      `SELECT DISTINCT s.id FROM sandboxes s, jsonb_array_elements(s.volumes_json) m
       WHERE m ->> 'volumeId' = ? AND s.status = ANY(?) ORDER BY s.id`,
      [volumeId, statuses],
    );
    return rows.map((r) => r.id);
  }

  async deleteVolumeUnlessUsed(id: string, statuses: SandboxStatus[]): Promise<{ deleted: boolean; users: string[] }> {
    return this.transaction(async (tx) => {
      // Waits for creates that mount it (they hold it FOR SHARE) and makes later ones find it gone.
      await run(tx, "SELECT 1 FROM volumes WHERE id = ? FOR UPDATE", [id]);
      const users = await this.volumeUsersNow(tx, id, statuses);
      if (users.length > 0) return { deleted: false, users };
      await run(tx, "DELETE FROM volumes WHERE id = ?", [id]);
      return { deleted: true, users };
    });
  }

  async replaceDesktopStream(record: DesktopStreamRecord): Promise<void> {
    await this.transaction(async (tx) => {
      // Concurrent starts of one sandbox's stream take turns: only one stream is live at a time.
      await run(tx, "SELECT 1 FROM sandboxes WHERE id = ? FOR UPDATE", [record.sandboxId]);
      await run(tx, desktopStreamSql.stopLive, [record.startedAt, record.sandboxId]);
      await run(tx, desktopStreamSql.insert, desktopStreamSql.insertValues(record));
    });
  }

  async liveDesktopStream(sandboxId: string): Promise<DesktopStreamRecord | undefined> {
    const row = await first<DesktopStreamRow>(this.pool, desktopStreamSql.live, [sandboxId]);
    return row && desktopStreamFromRow(row);
  }

  async stopDesktopStream(id: string, at: number): Promise<boolean> {
    return (await run(this.pool, desktopStreamSql.stop, [at, id])) > 0;
  }

  async insertEgressLog(entries: Omit<EgressLogRecord, "seq">[]): Promise<void> {
    if (entries.length === 0) return;
    await this.transaction(async (tx) => {
      // Followers read after the last sequence number they saw: numbers become visible in order.
      await lockUntilCommit(tx, ADVISORY_LOCKS.egress);
      for (let i = 0; i < entries.length; i += EGRESS_ROWS_PER_INSERT) {
        const chunk = entries.slice(i, i + EGRESS_ROWS_PER_INSERT);
        await run(tx, egressInsertSql(chunk.length), chunk.flatMap(egressInsertValues));
      }
    });
  }

  async listEgressLog(orgId: string, filter: EgressLogFilter): Promise<EgressLogRecord[]> {
    const where = egressListWhere(orgId, filter);
    const rows = await all<EgressLogRow>(
      this.pool,
      `SELECT * FROM egress_log WHERE ${where.sql} ORDER BY seq LIMIT ?`,
      [...where.values, filter.limit ?? 1000],
    );
    return rows.map(egressFromRow);
  }

  async updateEgressBytes(updates: { sandboxId: string; detail: string; bytesOut: number; bytesIn: number }[]) {
    if (updates.length === 0) return;
    await this.transaction(async (tx) => {
      for (const u of updates) {
        await run(
          tx,
          "UPDATE egress_log SET bytes_out = ?, bytes_in = ? WHERE sandbox_id = ? AND detail = ? AND decision = 'allowed'",
          [u.bytesOut, u.bytesIn, u.sandboxId, u.detail],
        );
      }
    });
  }

  async purgeEgressLog(before: number): Promise<void> {
    await run(this.pool, "DELETE FROM egress_log WHERE at < ?", [before]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.holder?.end().catch(() => undefined);
    await this.pool.end();
  }
}

/** Applies the migrations that have not run, in one transaction, one server at a time. */
async function migrate(pool: pg.Pool) {
  await inTransaction(pool, async (tx) => {
    await lockUntilCommit(tx, ADVISORY_LOCKS.migrate);
    await tx.query(
      "CREATE TABLE IF NOT EXISTS sandpit_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    );
    const done = (await first<{ v: number | null }>(tx, "SELECT max(version) AS v FROM sandpit_migrations"))?.v ?? 0;
    if (done > migrations.length) {
      throw new Error(`the database's schema is version ${done}, newer than this server's (${migrations.length})`);
    }
    for (let v = done; v < migrations.length; v++) {
      await tx.query(migrations[v]!);
      await run(tx, "INSERT INTO sandpit_migrations (version, applied_at) VALUES (?, ?)", [v + 1, Date.now()]);
    }
  });
}

/**
 * Takes the node's session lock on a connection of its own, held until the store closes (or the
 * process dies: PostgreSQL ends the session when its socket closes). A server that was just killed may
 * still hold it for a moment, so this waits up to `waitMs`.
 */
async function holdNode(url: string, nodeId: string, waitMs: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, keepAlive: true });
  client.on("error", () => undefined);
  await client.connect();
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { rows } = await client.query<{ held: boolean }>(
      "SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS held",
      [ADVISORY_LOCKS.node, nodeId],
    );
    if (rows[0]?.held) return client;
    if (Date.now() >= deadline) {
      await client.end().catch(() => undefined);
      throw new Error(
        `another Sandpit server is running as node ${nodeId} on this database: give each server its own SANDPIT_NODE_ID`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
