import { mkdirSync } from "node:fs";
import path from "node:path";
import type { SandboxStatus } from "@sandpit/contract";
import Database from "better-sqlite3";
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
  SandboxOwner,
  SandboxRecord,
  SnapshotRecord,
  VolumeRecord,
  WarmPoolRecord,
  WebhookRecord,
} from "../domain/index.js";
import { NODE_BOUND_STATUSES, NODE_LOST_REASON, VolumeMissingError, VolumeNameTakenError } from "../domain/index.js";
import {
  checkoutEvent,
  type EventDraft,
  movedEvent,
  sandboxTransitionEvents,
  snapshotEvents,
  type TransitionCause,
} from "../domain/lifecycle-events.js";
import { randomBase32 } from "../lib/ids.js";
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
  inList,
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
import { eventsMigration, SqliteEvents } from "./sqlite-events.js";
import type { LostNode, NodeRegistration, SandboxFilter, SandboxPatch, Store } from "./store.js";

/** Schema versions, applied in order; `PRAGMA user_version` records how many ran. */
const migrations = [
  `CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
   CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id),
     label TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), status TEXT NOT NULL, reason TEXT,
     template TEXT NOT NULL, vcpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL, disk_mb INTEGER NOT NULL,
     env_json TEXT NOT NULL, metadata_json TEXT NOT NULL, cwd TEXT NOT NULL, timeout_ms INTEGER NOT NULL,
     net_index INTEGER, agent_token TEXT NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER,
     expires_at INTEGER, destroyed_at INTEGER);
   CREATE UNIQUE INDEX sandboxes_net_index ON sandboxes(net_index) WHERE net_index IS NOT NULL;
   CREATE INDEX sandboxes_org_status ON sandboxes(org_id, status);
   CREATE TABLE commands (
     id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
     argv_json TEXT NOT NULL, cwd TEXT NOT NULL, background INTEGER NOT NULL, status TEXT NOT NULL,
     pid INTEGER, exit_code INTEGER, timed_out INTEGER NOT NULL, started_at INTEGER NOT NULL,
     finished_at INTEGER);
   CREATE INDEX commands_sandbox ON commands(sandbox_id);`,
  `ALTER TABLE sandboxes ADD COLUMN network_policy_json TEXT NOT NULL DEFAULT '{"mode":"allow-all"}';
   ALTER TABLE sandboxes ADD COLUMN ports_json TEXT NOT NULL DEFAULT '[]';
   ALTER TABLE sandboxes ADD COLUMN public_ports INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE sandboxes ADD COLUMN traffic_token TEXT NOT NULL DEFAULT '';`,
  `ALTER TABLE sandboxes ADD COLUMN timeout_action TEXT NOT NULL DEFAULT 'destroy';
   ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT NOT NULL DEFAULT 'ephemeral';
   ALTER TABLE sandboxes ADD COLUMN idle_timeout_ms INTEGER;
   ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;`,
  `CREATE TABLE idempotency_keys (
     org_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, owner TEXT,
     response_status INTEGER, response_body TEXT, created_at INTEGER NOT NULL,
     PRIMARY KEY (org_id, key));`,
  `CREATE TABLE snapshots (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), json TEXT NOT NULL,
     created_at INTEGER NOT NULL);
   CREATE INDEX snapshots_org ON snapshots(org_id);`,
  `CREATE TABLE warm_pools (id TEXT PRIMARY KEY, json TEXT NOT NULL);`,
  `CREATE TABLE org_quotas (org_id TEXT PRIMARY KEY REFERENCES orgs(id), max_sandboxes INTEGER,
     max_vcpus INTEGER, max_memory_mb INTEGER);`,
  `ALTER TABLE sandboxes ADD COLUMN user_name TEXT;
   ALTER TABLE sandboxes ADD COLUMN main_command_id TEXT;`,
  `ALTER TABLE sandboxes ADD COLUMN all_ports INTEGER NOT NULL DEFAULT 0;`,
  `CREATE TABLE egress_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT, org_id TEXT NOT NULL, sandbox_id TEXT NOT NULL, at INTEGER NOT NULL,
     protocol TEXT NOT NULL, ip TEXT, port INTEGER, domain TEXT, decision TEXT NOT NULL, rule TEXT NOT NULL,
     bytes_out INTEGER, bytes_in INTEGER, detail TEXT);
   CREATE INDEX egress_log_sandbox ON egress_log (sandbox_id, seq);
   CREATE INDEX egress_log_org ON egress_log (org_id, seq);
   CREATE INDEX egress_log_at ON egress_log (at);
   CREATE INDEX egress_log_flow ON egress_log (sandbox_id, detail);`,
  `CREATE TABLE volumes (id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,
     size_mb INTEGER NOT NULL, created_at INTEGER NOT NULL, UNIQUE (org_id, name));
   ALTER TABLE sandboxes ADD COLUMN volumes_json TEXT NOT NULL DEFAULT '[]';`,
  eventsMigration,
  `ALTER TABLE sandboxes ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
   DROP INDEX sandboxes_net_index;
   CREATE UNIQUE INDEX sandboxes_net_index ON sandboxes(node_id, net_index) WHERE net_index IS NOT NULL;
   CREATE TABLE nodes (
     id TEXT PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL, epoch INTEGER NOT NULL,
     lease_expires_at INTEGER NOT NULL, capacity_json TEXT NOT NULL, labels_json TEXT NOT NULL,
     version TEXT NOT NULL, started_at INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL);`,
  `ALTER TABLE sandboxes ADD COLUMN hibernate INTEGER NOT NULL DEFAULT 1;`,
  `CREATE TABLE desktop_streams (
     id TEXT PRIMARY KEY, sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
     view_only INTEGER NOT NULL, token TEXT NOT NULL, command_id TEXT NOT NULL, started_at INTEGER NOT NULL,
     stopped_at INTEGER);
   CREATE UNIQUE INDEX desktop_streams_live ON desktop_streams (sandbox_id) WHERE stopped_at IS NULL;`,
  `ALTER TABLE sandboxes ADD COLUMN desktop_json TEXT;`,
];

/** The embedded default store: one SQLite file in the data directory, WAL mode. */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly events: SqliteEvents;

  constructor(
    file: string,
    /** The node this store works for (see Store.nodeId); a SQLite store has only this one. */
    readonly nodeId = "local",
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.migrate();
    // Sandboxes from before nodes existed, or of a data directory whose node was renamed, are this node's.
    this.db.prepare("UPDATE sandboxes SET node_id = ? WHERE node_id <> ?").run(nodeId, nodeId);
    this.events = new SqliteEvents(this.db);
  }

  /**
   * Runs `change` in a transaction with the events it returns, so that a change is never committed
   * without its events (and their webhook deliveries); listeners hear of them after the commit.
   */
  private withEvents<T>(change: () => { result: T; events: EventDraft[] }): T {
    const { result, recorded } = this.db.transaction(() => {
      const { result, events } = change();
      return { result, recorded: this.events.record(events) };
    })();
    this.events.notify(recorded);
    return result;
  }

  private migrate() {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    for (let v = version; v < migrations.length; v++) {
      this.db.transaction(() => {
        this.db.exec(migrations[v] ?? "");
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  async registerNode(node: NodeRegistration, leaseTtlMs: number): Promise<NodeRecord> {
    const now = Date.now();
    this.db
      .prepare(
        `INSERT INTO nodes (id, url, capacity_json, labels_json, version, started_at, state, epoch, lease_expires_at,
           heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, 'ready', 1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, capacity_json = excluded.capacity_json,
           labels_json = excluded.labels_json, version = excluded.version, started_at = excluded.started_at,
           state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'ready' END, epoch = nodes.epoch + 1,
           lease_expires_at = excluded.lease_expires_at, heartbeat_at = excluded.heartbeat_at`,
      )
      .run(...nodeRegistrationValues(node), now + leaseTtlMs, now);
    return (await this.getNode(node.id))!;
  }

  async renewNodeLease(id: string, epoch: number, leaseTtlMs: number): Promise<NodeRecord | undefined> {
    const now = Date.now();
    const { changes } = this.db
      .prepare("UPDATE nodes SET lease_expires_at = ?, heartbeat_at = ? WHERE id = ? AND epoch = ? AND state <> 'lost'")
      .run(now + leaseTtlMs, now, id, epoch);
    return changes ? this.getNode(id) : undefined;
  }

  /** The only node of its host: no other node can take its sandboxes over, so there is nothing to fence. */
  fence(_epoch: number): void {}

  async getNode(id: string): Promise<NodeRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM nodes WHERE id = ?").get(id) as NodeRow | undefined;
    return row && nodeFromRow(row);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (this.db.prepare("SELECT * FROM nodes ORDER BY id").all() as NodeRow[]).map(nodeFromRow);
  }

  async setNodeState(
    id: string,
    state: NodeRecord["state"],
    onlyIf?: NodeRecord["state"][],
  ): Promise<NodeRecord | undefined> {
    const condition = onlyIf ? ` AND ${inList("state", onlyIf)}` : "";
    const { changes } = this.db
      .prepare(`UPDATE nodes SET state = ? WHERE id = ?${condition}`)
      .run(state, id, ...(onlyIf ?? []));
    return changes ? this.getNode(id) : undefined;
  }

  async nodeUsage(): Promise<NodeUsage[]> {
    return nodeUsageFromRows(this.db.prepare(nodeUsageSql).all() as NodeUsageRow[]);
  }

  async declareLostNodes(graceMs: number): Promise<LostNode[]> {
    return this.withEvents(() => {
      const at = Date.now();
      const nodes = (
        this.db
          .prepare("SELECT * FROM nodes WHERE id <> ? AND state <> 'lost' AND lease_expires_at < ?")
          .all(this.nodeId, at - graceMs) as NodeRow[]
      ).map(nodeFromRow);
      const lost: LostNode[] = [];
      const events: EventDraft[] = [];
      for (const node of nodes) {
        this.db.prepare("UPDATE nodes SET state = 'lost' WHERE id = ?").run(node.id);
        const stranded = (
          this.db
            .prepare(
              `SELECT * FROM sandboxes WHERE node_id = ? AND ${inList("status", NODE_BOUND_STATUSES)} ORDER BY id`,
            )
            .all(node.id, ...NODE_BOUND_STATUSES) as SandboxRow[]
        ).map(sandboxFromRow);
        for (const before of stranded) {
          this.db
            .prepare("UPDATE sandboxes SET status = 'error', reason = ?, net_index = NULL WHERE id = ?")
            .run(NODE_LOST_REASON, before.id);
          this.db
            .prepare("UPDATE commands SET status = 'lost', finished_at = ? WHERE sandbox_id = ? AND status = 'running'")
            .run(at, before.id);
          events.push(...sandboxTransitionEvents(before, this.sandboxRow(before.id)!, at, NODE_LOST_REASON));
        }
        lost.push({ node: { ...node, state: "lost" }, sandboxIds: stranded.map((s) => s.id) });
      }
      return { result: lost, events };
    });
  }

  /** The only node of its host runs the cluster's jobs. */
  async holdClusterLease(_name: string, _ttlMs: number): Promise<boolean> {
    return true;
  }

  async sandboxOwner(sandboxId: string): Promise<SandboxOwner | undefined> {
    const row = this.db
      .prepare(
        `SELECT s.node_id, n.url, n.state, n.lease_expires_at > ? AS lease_live
         FROM sandboxes s JOIN nodes n ON n.id = s.node_id WHERE s.id = ?`,
      )
      .get(Date.now(), sandboxId) as
      | { node_id: string; url: string; state: NodeRecord["state"]; lease_live: number }
      | undefined;
    return row && { nodeId: row.node_id, url: row.url, state: row.state, leaseLive: row.lease_live === 1 };
  }

  /** One node has no one to share with: the key stays where the caller keeps it (a 0600 file). */
  async sharedKey(_name: string, initial: Buffer): Promise<Buffer> {
    return initial;
  }

  async ensureOrg(name: string): Promise<OrgRecord> {
    const existing = this.db.prepare("SELECT * FROM orgs WHERE name = ?").get(name) as OrgRow | undefined;
    if (existing) return orgFromRow(existing);
    const org = { id: `org_${randomBase32(20)}`, name, createdAt: Date.now() };
    this.db
      .prepare("INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING")
      .run(org.id, org.name, org.createdAt);
    return this.ensureOrg(name);
  }

  async addApiKey(orgId: string, keyHash: string, label: string): Promise<void> {
    this.db
      .prepare("INSERT OR IGNORE INTO api_keys (key_hash, org_id, label, created_at) VALUES (?, ?, ?, ?)")
      .run(keyHash, orgId, label, Date.now());
  }

  async orgByApiKeyHash(keyHash: string): Promise<OrgRecord | undefined> {
    const row = this.db.prepare(orgByKeySql).get(keyHash) as OrgRow | undefined;
    return row && orgFromRow(row);
  }

  async countApiKeys(): Promise<number> {
    return (this.db.prepare("SELECT count(*) AS n FROM api_keys").get() as { n: number }).n;
  }

  async insertSandbox(
    record: Omit<SandboxRecord, "netIndex" | "nodeId">,
    maxNetIndex: number,
    quota: OrgQuota,
    overcommit: Overcommit,
  ): Promise<SandboxRecord> {
    return this.db.transaction(() => {
      this.checkQuota(record.orgId, quota, record.vcpus, record.memoryMb);
      const node = this.db.prepare("SELECT capacity_json FROM nodes WHERE id = ?").pluck().get(this.nodeId) as
        | string
        | undefined;
      const allocated = this.db.prepare(nodeAllocationSql).get(...nodeAllocationValues(this.nodeId)) as
        | AllocationRow
        | undefined;
      assertNodeHasRoom(
        this.nodeId,
        node === undefined ? undefined : (JSON.parse(node) as NodeCapacity),
        allocationFromRow(allocated),
        record,
        overcommit,
      );
      for (const mount of record.volumes) {
        if (mount.volumeId && !this.db.prepare("SELECT 1 FROM volumes WHERE id = ?").get(mount.volumeId)) {
          throw new VolumeMissingError(mount.volumeId);
        }
      }
      const used = this.db
        .prepare("SELECT net_index FROM sandboxes WHERE node_id = ? AND net_index IS NOT NULL ORDER BY net_index")
        .pluck()
        .all(this.nodeId) as number[];
      const full: SandboxRecord = { ...record, nodeId: this.nodeId, netIndex: lowestFreeSlot(used, maxNetIndex) };
      const insert = sandboxInsert(full);
      this.db.prepare(insert.sql).run(...insert.values);
      return full;
    })();
  }

  /** Throws QuotaExceededError when one more sandbox of this size would go over; call inside a transaction. */
  private checkQuota(orgId: string, quota: OrgQuota, vcpus: number, memoryMb: number) {
    const usage = this.db.prepare(quotaUsageSql).get(...quotaUsageValues(orgId)) as {
      sandboxes: number;
      vcpus: number;
      memory: number;
    };
    assertWithinQuota(quota, usage, vcpus, memoryMb);
  }

  async nodeLoads(): Promise<NodeLoad[]> {
    const now = Date.now();
    const allocations = this.db.prepare(allocationsSql).all(...allocationsValues) as AllocationRow[];
    return (this.db.prepare("SELECT * FROM nodes ORDER BY id").all() as NodeRow[]).map((row) => ({
      node: nodeFromRow(row),
      leaseLive: Number(row.lease_expires_at) > now,
      allocated: allocationFromRow(allocations.find((a) => a.node_id === row.id)),
    }));
  }

  async getOrgQuota(orgId: string): Promise<OrgQuota> {
    return quotaFromRow(this.db.prepare(quotaSql).get(orgId) as QuotaRow | undefined);
  }

  async setOrgQuota(orgId: string, quota: OrgQuota): Promise<void> {
    this.db.prepare(quotaUpsertSql).run(orgId, quota.maxSandboxes, quota.maxVcpus, quota.maxMemoryMb);
  }

  async getSandbox(id: string): Promise<SandboxRecord | undefined> {
    return this.sandboxRow(id);
  }

  async listSandboxes(orgId: string, filter: SandboxFilter): Promise<SandboxRecord[]> {
    // json_each, not a JSON path: a path cannot name a key with a double quote in it.
    const where = sandboxListWhere(
      orgId,
      filter,
      "EXISTS (SELECT 1 FROM json_each(metadata_json) WHERE key = ? AND value = ?)",
    );
    const rows = this.db
      .prepare(`SELECT * FROM sandboxes WHERE ${where.sql} ORDER BY created_at DESC, id LIMIT ?`)
      .all(...where.values, filter.limit ?? 1000) as SandboxRow[];
    return rows.map(sandboxFromRow);
  }

  async sandboxesInStatus(statuses: SandboxStatus[]): Promise<SandboxRecord[]> {
    const rows = this.db
      .prepare(`SELECT * FROM sandboxes WHERE node_id = ? AND ${inList("status", statuses)}`)
      .all(this.nodeId, ...statuses) as SandboxRow[];
    return rows.map(sandboxFromRow);
  }

  async moveSandboxHere(id: string, from: string, maxNetIndex: number): Promise<SandboxRecord | undefined> {
    return this.withEvents(() => {
      const before = this.sandboxRow(id);
      const fromServes = this.db
        .prepare("SELECT 1 FROM nodes WHERE id = ? AND state = 'ready' AND lease_expires_at > ?")
        .get(from, Date.now());
      if (before?.status !== "paused" || before.nodeId !== from || from === this.nodeId || fromServes) {
        return { result: undefined, events: [] };
      }
      const used = this.db
        .prepare("SELECT net_index FROM sandboxes WHERE node_id = ? AND net_index IS NOT NULL ORDER BY net_index")
        .pluck()
        .all(this.nodeId) as number[];
      this.db
        .prepare("UPDATE sandboxes SET node_id = ?, net_index = ? WHERE id = ?")
        .run(this.nodeId, lowestFreeSlot(used, maxNetIndex), id);
      const after = this.sandboxRow(id)!;
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
    const params = [...set.values, id];
    let sql = `UPDATE sandboxes SET ${set.sql} WHERE id = ?`;
    if (onlyIf?.length) {
      sql += ` AND status IN (${onlyIf.map(() => "?").join(", ")})`;
      params.push(...onlyIf);
    }
    // Every status change of every sandbox passes here: its lifecycle event is written with it.
    return this.withEvents(() => {
      const before = this.sandboxRow(id);
      const holds = before !== undefined && (!onlyIf?.length || onlyIf.includes(before.status));
      const result = set.empty ? { changes: holds ? 1 : 0 } : this.db.prepare(sql).run(...params);
      const after = result.changes === 0 ? undefined : this.sandboxRow(id);
      const events = before && after ? sandboxTransitionEvents(before, after, Date.now(), cause) : [];
      return { result: after, events };
    });
  }

  private sandboxRow(id: string): SandboxRecord | undefined {
    const row = this.db.prepare("SELECT * FROM sandboxes WHERE id = ?").get(id) as SandboxRow | undefined;
    return row && sandboxFromRow(row);
  }

  async insertEgressLog(entries: Omit<EgressLogRecord, "seq">[]): Promise<void> {
    if (entries.length === 0) return;
    const insert = this.db.prepare(egressInsertSql(1));
    this.db.transaction(() => {
      for (const e of entries) insert.run(...egressInsertValues(e));
    })();
  }

  async listEgressLog(orgId: string, filter: EgressLogFilter): Promise<EgressLogRecord[]> {
    const where = egressListWhere(orgId, filter);
    const rows = this.db
      .prepare(`SELECT * FROM egress_log WHERE ${where.sql} ORDER BY seq LIMIT ?`)
      .all(...where.values, filter.limit ?? 1000) as EgressLogRow[];
    return rows.map(egressFromRow);
  }

  async updateEgressBytes(updates: { sandboxId: string; detail: string; bytesOut: number; bytesIn: number }[]) {
    const update = this.db.prepare(
      "UPDATE egress_log SET bytes_out = ?, bytes_in = ? WHERE sandbox_id = ? AND detail = ? AND decision = 'allowed'",
    );
    this.db.transaction(() => {
      for (const u of updates) update.run(u.bytesOut, u.bytesIn, u.sandboxId, u.detail);
    })();
  }

  async purgeEgressLog(before: number): Promise<void> {
    this.db.prepare("DELETE FROM egress_log WHERE at < ?").run(before);
  }

  async purgeDestroyed(before: number): Promise<number> {
    return this.db.prepare("DELETE FROM sandboxes WHERE status = 'destroyed' AND destroyed_at < ?").run(before).changes;
  }

  async insertCommand(c: CommandRecord): Promise<void> {
    this.db.prepare(commandInsertSql).run(...commandInsertValues(c));
  }

  async updateCommand(id: string, patch: Partial<Omit<CommandRecord, "id" | "sandboxId">>): Promise<void> {
    const set = setClause(patch, commandColumns);
    if (set.empty) return;
    this.db.prepare(`UPDATE commands SET ${set.sql} WHERE id = ?`).run(...set.values, id);
  }

  async getCommand(sandboxId: string, id: string): Promise<CommandRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM commands WHERE id = ? AND sandbox_id = ?").get(id, sandboxId) as
      | CommandRow
      | undefined;
    return row && commandFromRow(row);
  }

  async listCommands(sandboxId: string): Promise<CommandRecord[]> {
    const rows = this.db
      .prepare("SELECT * FROM commands WHERE sandbox_id = ? ORDER BY started_at, id")
      .all(sandboxId) as CommandRow[];
    return rows.map(commandFromRow);
  }

  async markRunningCommandsLost(sandboxId: string): Promise<void> {
    this.db
      .prepare("UPDATE commands SET status = 'lost', finished_at = ? WHERE sandbox_id = ? AND status = 'running'")
      .run(Date.now(), sandboxId);
  }

  async claimIdempotencyKey(
    r: Omit<IdempotencyRecord, "responseStatus" | "responseBody">,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }> {
    const inserted = this.db
      .prepare(
        `INSERT OR IGNORE INTO idempotency_keys (org_id, key, request_hash, owner, created_at)
         VALUES (?, ?, ?, ?, ?)`,
      )
      .run(r.orgId, r.key, r.requestHash, r.owner, r.createdAt);
    if (inserted.changes === 1) return { claimed: true };
    return { claimed: false, existing: (await this.getIdempotencyKey(r.orgId, r.key))! };
  }

  async takeOverIdempotencyKey(orgId: string, key: string, from: string | null, owner: string): Promise<boolean> {
    return (
      this.db
        .prepare(
          `UPDATE idempotency_keys SET owner = ? WHERE org_id = ? AND key = ? AND owner IS ?
           AND response_status IS NULL`,
        )
        .run(owner, orgId, key, from).changes === 1
    );
  }

  async completeIdempotencyKey(orgId: string, key: string, status: number, body: string): Promise<void> {
    this.db
      .prepare(
        "UPDATE idempotency_keys SET response_status = ?, response_body = ?, owner = NULL WHERE org_id = ? AND key = ?",
      )
      .run(status, body, orgId, key);
  }

  async releaseIdempotencyKey(orgId: string, key: string): Promise<void> {
    this.db.prepare("DELETE FROM idempotency_keys WHERE org_id = ? AND key = ?").run(orgId, key);
  }

  async getIdempotencyKey(orgId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM idempotency_keys WHERE org_id = ? AND key = ?").get(orgId, key) as
      | IdempotencyRow
      | undefined;
    return row && idempotencyFromRow(row);
  }

  async purgeIdempotencyKeys(before: number): Promise<void> {
    this.db.prepare("DELETE FROM idempotency_keys WHERE created_at < ?").run(before);
  }

  async checkoutPooled(
    poolOrgId: string,
    poolId: string,
    orgId: string,
    patch: SandboxPatch,
    quota: OrgQuota,
  ): Promise<SandboxRecord | undefined> {
    return this.withEvents(() => {
      const row = this.db
        .prepare(
          `SELECT * FROM sandboxes WHERE org_id = ? AND node_id = ? AND status = 'running'
           AND json_extract(metadata_json, '$."sandpit.pool"') = ? ORDER BY created_at LIMIT 1`,
        )
        .get(poolOrgId, this.nodeId, poolId) as SandboxRow | undefined;
      if (!row) return { result: undefined, events: [] };
      this.checkQuota(orgId, quota, row.vcpus, row.memory_mb);
      const set = setClause({ ...patch, orgId }, { ...sandboxColumns, orgId: "org_id" });
      this.db.prepare(`UPDATE sandboxes SET ${set.sql} WHERE id = ?`).run(...set.values, row.id);
      const taken = this.sandboxRow(row.id)!;
      return { result: taken, events: [checkoutEvent(taken, poolId, Date.now())] };
    });
  }

  async listWarmPools(): Promise<WarmPoolRecord[]> {
    const rows = this.db.prepare("SELECT json FROM warm_pools ORDER BY id").all() as { json: string }[];
    return rows.map((r) => JSON.parse(r.json) as WarmPoolRecord);
  }

  async putWarmPool(pool: WarmPoolRecord): Promise<void> {
    this.db
      .prepare("INSERT INTO warm_pools (id, json) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json")
      .run(pool.id, toJsonText(pool));
  }

  async deleteWarmPool(id: string): Promise<void> {
    this.db.prepare("DELETE FROM warm_pools WHERE id = ?").run(id);
  }

  async insertSnapshot(record: SnapshotRecord): Promise<void> {
    this.db
      .prepare("INSERT INTO snapshots (id, org_id, json, created_at) VALUES (?, ?, ?, ?)")
      .run(record.id, record.orgId, toJsonText(record), record.createdAt);
  }

  async updateSnapshot(id: string, patch: Partial<Pick<SnapshotRecord, "status" | "sizeBytes">>): Promise<void> {
    this.withEvents(() => {
      const row = this.db.prepare("SELECT json FROM snapshots WHERE id = ?").get(id) as { json: string } | undefined;
      if (!row) return { result: undefined, events: [] };
      const before = JSON.parse(row.json) as SnapshotRecord;
      const after = { ...before, ...patch };
      this.db.prepare("UPDATE snapshots SET json = ? WHERE id = ?").run(toJsonText(after), id);
      return { result: undefined, events: snapshotEvents(before, after, Date.now()) };
    });
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    const row = this.db.prepare("SELECT json FROM snapshots WHERE id = ?").get(id) as { json: string } | undefined;
    return row && (JSON.parse(row.json) as SnapshotRecord);
  }

  async listSnapshots(orgId: string): Promise<SnapshotRecord[]> {
    const rows = this.db
      .prepare("SELECT json FROM snapshots WHERE org_id = ? ORDER BY created_at DESC, id")
      .all(orgId) as { json: string }[];
    return rows.map((r) => JSON.parse(r.json) as SnapshotRecord);
  }

  async deleteSnapshot(id: string): Promise<void> {
    this.db.prepare("DELETE FROM snapshots WHERE id = ?").run(id);
  }

  async listEvents(orgId: string, filter: EventFilter): Promise<EventRecord[]> {
    return this.events.list(orgId, filter);
  }

  async latestEventId(orgId: string): Promise<number> {
    return this.events.latestId(orgId);
  }

  async purgeEvents(before: number): Promise<void> {
    this.events.purge(before);
  }

  onEvents(listener: (events: EventRecord[]) => void): () => void {
    return this.events.onEvents(listener);
  }

  async insertWebhook(record: WebhookRecord): Promise<void> {
    this.events.insertWebhook(record);
  }

  async getWebhook(id: string): Promise<WebhookRecord | undefined> {
    return this.events.getWebhook(id);
  }

  async listWebhooks(orgId: string): Promise<WebhookRecord[]> {
    return this.events.webhooksOf(orgId);
  }

  async deleteWebhook(id: string): Promise<void> {
    this.events.deleteWebhook(id);
  }

  async claimDueDeliveries(now: number, leaseUntil: number, limit: number): Promise<ClaimedDelivery[]> {
    return this.events.claimDue(now, leaseUntil, limit);
  }

  async nextDeliveryDue(): Promise<number | undefined> {
    return this.events.nextDue();
  }

  async recordDeliveryAttempt(attempt: DeliveryAttemptRecord): Promise<void> {
    this.events.recordAttempt(attempt);
  }

  async listDeliveryAttempts(webhookId: string, limit: number): Promise<DeliveryAttemptRecord[]> {
    return this.events.listAttempts(webhookId, limit);
  }

  async insertVolume(record: VolumeRecord): Promise<void> {
    const inserted = this.db
      .prepare(
        `INSERT INTO volumes (id, org_id, name, size_mb, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(org_id, name) DO NOTHING`,
      )
      .run(record.id, record.orgId, record.name, record.sizeMb, record.createdAt);
    if (inserted.changes === 0) throw new VolumeNameTakenError(record.name);
  }

  async getVolume(id: string): Promise<VolumeRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM volumes WHERE id = ?").get(id) as VolumeRow | undefined;
    return row && volumeFromRow(row);
  }

  async getVolumeByName(orgId: string, name: string): Promise<VolumeRecord | undefined> {
    const row = this.db.prepare("SELECT * FROM volumes WHERE org_id = ? AND name = ?").get(orgId, name) as
      | VolumeRow
      | undefined;
    return row && volumeFromRow(row);
  }

  async listVolumes(orgId: string | undefined): Promise<VolumeRecord[]> {
    const rows = (
      orgId === undefined
        ? this.db.prepare("SELECT * FROM volumes ORDER BY created_at, id").all()
        : this.db.prepare("SELECT * FROM volumes WHERE org_id = ? ORDER BY name").all(orgId)
    ) as VolumeRow[];
    return rows.map(volumeFromRow);
  }

  async volumeUsers(volumeId: string, statuses: SandboxStatus[]): Promise<string[]> {
    return this.volumeUsersNow(volumeId, statuses);
  }

  private volumeUsersNow(volumeId: string, statuses: SandboxStatus[]): string[] {
    return this.db
      .prepare(
        `SELECT DISTINCT s.id FROM sandboxes s, json_each(s.volumes_json) m
         WHERE json_extract(m.value, '$.volumeId') = ? AND s.status IN (${statuses.map(() => "?").join(", ")})
         ORDER BY s.id`,
      )
      .pluck()
      .all(volumeId, ...statuses) as string[];
  }

  async deleteVolumeUnlessUsed(id: string, statuses: SandboxStatus[]): Promise<{ deleted: boolean; users: string[] }> {
    return this.db.transaction(() => {
      const users = this.volumeUsersNow(id, statuses);
      if (users.length > 0) return { deleted: false, users };
      this.db.prepare("DELETE FROM volumes WHERE id = ?").run(id);
      return { deleted: true, users };
    })();
  }

  async replaceDesktopStream(record: DesktopStreamRecord): Promise<void> {
    this.db.transaction(() => {
      this.db.prepare(desktopStreamSql.stopLive).run(record.startedAt, record.sandboxId);
      this.db.prepare(desktopStreamSql.insert).run(...desktopStreamSql.insertValues(record));
    })();
  }

  async liveDesktopStream(sandboxId: string): Promise<DesktopStreamRecord | undefined> {
    const row = this.db.prepare(desktopStreamSql.live).get(sandboxId) as DesktopStreamRow | undefined;
    return row && desktopStreamFromRow(row);
  }

  async stopDesktopStream(id: string, at: number): Promise<boolean> {
    return this.db.prepare(desktopStreamSql.stop).run(at, id).changes > 0;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
