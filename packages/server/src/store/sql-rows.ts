import type { EventType, NetworkPolicy, SandboxStatus } from "@sandpit/contract";
import type {
  CommandRecord,
  DeliveryAttemptRecord,
  DesktopStreamRecord,
  EgressLogFilter,
  EgressLogRecord,
  EventFilter,
  EventRecord,
  IdempotencyRecord,
  NodeCapacity,
  NodeRecord,
  NodeUsage,
  OrgQuota,
  OrgRecord,
  SandboxDesktop,
  SandboxRecord,
  SandboxVolumeRecord,
  VolumeRecord,
  WebhookDeliveryRecord,
  WebhookRecord,
} from "../domain/index.js";
import {
  COMPUTE_STATUSES,
  NODE_BOUND_STATUSES,
  NoCapacityError,
  type Overcommit,
  QuotaExceededError,
  RESIDENT_STATUSES,
  type ResourceRequest,
  shortfallOf,
} from "../domain/index.js";
import type { EventDraft } from "../domain/lifecycle-events.js";
import type { NodeRegistration, SandboxFilter, SandboxPatch } from "./store.js";

/*
 * What the SQL stores (SQLite and PostgreSQL) share: both have the same tables and column names, so one
 * set of row shapes, field → column maps, row mappers, filters and rules serves both. The column types
 * differ where each database has its own: a JSON column is TEXT in SQLite and jsonb (already parsed) in
 * PostgreSQL; a flag is 0/1 in SQLite and a boolean in PostgreSQL. SQL here uses `?` placeholders; the
 * PostgreSQL store numbers them.
 */

/** A JSON column: text in SQLite, the parsed value in PostgreSQL (jsonb). */
type JsonColumn = unknown;
/** A flag column: 0/1 in SQLite, a boolean in PostgreSQL. */
type FlagColumn = number | boolean;

function fromJson<T>(value: JsonColumn): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

function flag(value: FlagColumn): boolean {
  return value === true || value === 1;
}

/** Statuses whose sandboxes count against a quota. */
export const QUOTA_STATUSES: SandboxStatus[] = ["creating", "running", "pausing", "paused", "resuming"];

export interface OrgRow {
  id: string;
  name: string;
  created_at: number;
}

export interface SandboxRow {
  id: string;
  org_id: string;
  status: SandboxStatus;
  reason: string | null;
  template: string;
  vcpus: number;
  memory_mb: number;
  disk_mb: number;
  env_json: JsonColumn;
  metadata_json: JsonColumn;
  cwd: string;
  timeout_ms: number;
  network_policy_json: JsonColumn;
  timeout_action: "destroy" | "pause";
  lifecycle: "ephemeral" | "persistent";
  idle_timeout_ms: number | null;
  auto_resume: FlagColumn;
  hibernate: FlagColumn;
  ports_json: JsonColumn;
  public_ports: FlagColumn;
  traffic_token: string;
  net_index: number | null;
  node_id: string;
  agent_token: string;
  user_name: string | null;
  all_ports: FlagColumn;
  main_command_id: string | null;
  volumes_json: JsonColumn;
  desktop_json: JsonColumn | null;
  created_at: number;
  started_at: number | null;
  expires_at: number | null;
  destroyed_at: number | null;
}

export interface CommandRow {
  id: string;
  sandbox_id: string;
  argv_json: JsonColumn;
  cwd: string;
  background: FlagColumn;
  status: CommandRecord["status"];
  pid: number | null;
  exit_code: number | null;
  timed_out: FlagColumn;
  started_at: number;
  finished_at: number | null;
}

export interface VolumeRow {
  id: string;
  org_id: string;
  name: string;
  size_mb: number;
  created_at: number;
}

export interface DesktopStreamRow {
  id: string;
  sandbox_id: string;
  view_only: FlagColumn;
  token: string;
  command_id: string;
  started_at: number;
  stopped_at: number | null;
}

export interface IdempotencyRow {
  org_id: string;
  key: string;
  request_hash: string;
  owner: string | null;
  response_status: number | null;
  response_body: string | null;
  created_at: number;
}

export interface EgressLogRow {
  seq: number;
  org_id: string;
  sandbox_id: string;
  at: number;
  protocol: EgressLogRecord["protocol"];
  ip: string | null;
  port: number | null;
  domain: string | null;
  decision: "allowed" | "denied";
  rule: string;
  bytes_out: number | null;
  bytes_in: number | null;
  detail: string | null;
}

export interface EventRow {
  id: number;
  org_id: string;
  sandbox_id: string;
  type: EventType;
  at: number;
  data_json: JsonColumn;
}

export interface WebhookRow {
  id: string;
  org_id: string;
  url: string;
  secret: string;
  events_json: JsonColumn;
  created_at: number;
}

export interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: number;
  state: WebhookDeliveryRecord["state"];
  attempts: number;
  next_attempt_at: number | null;
}

/** A row of `attemptsSql`. */
export interface AttemptRow {
  delivery_id: string;
  event_id: number;
  event_type: EventType;
  attempt: number;
  at: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  state: DeliveryAttemptRecord["state"];
  next_attempt_at: number | null;
}

export const sandboxColumns: Record<keyof SandboxPatch, string> = {
  status: "status",
  reason: "reason",
  template: "template",
  vcpus: "vcpus",
  memoryMb: "memory_mb",
  diskMb: "disk_mb",
  env: "env_json",
  metadata: "metadata_json",
  cwd: "cwd",
  timeoutMs: "timeout_ms",
  networkPolicy: "network_policy_json",
  timeoutAction: "timeout_action",
  lifecycle: "lifecycle",
  idleTimeoutMs: "idle_timeout_ms",
  autoResume: "auto_resume",
  hibernate: "hibernate",
  ports: "ports_json",
  publicPorts: "public_ports",
  trafficToken: "traffic_token",
  netIndex: "net_index",
  nodeId: "node_id",
  agentToken: "agent_token",
  user: "user_name",
  allPorts: "all_ports",
  mainCommandId: "main_command_id",
  volumes: "volumes_json",
  desktop: "desktop_json",
  startedAt: "started_at",
  expiresAt: "expires_at",
  destroyedAt: "destroyed_at",
};

export const commandColumns: Record<keyof Omit<CommandRecord, "id" | "sandboxId">, string> = {
  argv: "argv_json",
  cwd: "cwd",
  background: "background",
  status: "status",
  pid: "pid",
  exitCode: "exit_code",
  timedOut: "timed_out",
  startedAt: "started_at",
  finishedAt: "finished_at",
};

/**
 * A value as the text of a JSON column. PostgreSQL's jsonb cannot hold a NUL character (`\u0000`), so
 * both stores keep U+FFFD in its place and agree on what they return. An escape is one preceded by an
 * even number of backslashes (`\\u0000` is a backslash and the letters u0000).
 */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value).replace(/(?<!\\)((?:\\\\)*)\\u0000/g, "$1\\ufffd");
}

/** A field's value as a parameter: flags as 0/1 (PostgreSQL reads '1' as true), objects as JSON text. */
function toColumnValue(value: unknown): unknown {
  if (typeof value === "boolean") return value ? 1 : 0;
  if (value !== null && typeof value === "object") return toJsonText(value);
  return value;
}

/** `col = ?, ...` and its values for a patch, through a field → column map. */
export function setClause<K extends string>(patch: Partial<Record<K, unknown>>, columns: Record<K, string>) {
  const entries = Object.entries(patch) as [K, unknown][];
  return {
    sql: entries.map(([k]) => `${columns[k]} = ?`).join(", "),
    columns: entries.map(([k]) => columns[k]),
    values: entries.map(([, v]) => toColumnValue(v)),
    empty: entries.length === 0,
  };
}

/**
 * The INSERT of a new sandbox: every field goes through the same field → column map as updates, so a
 * new field is one map entry.
 */
export function sandboxInsert(record: SandboxRecord): { sql: string; values: unknown[] } {
  const { id, orgId, createdAt, ...fields } = record;
  const set = setClause(fields, sandboxColumns);
  const names = ["id", "org_id", "created_at", ...set.columns];
  return {
    sql: `INSERT INTO sandboxes (${names.join(", ")}) VALUES (${names.map(() => "?").join(", ")})`,
    values: [id, orgId, createdAt, ...set.values],
  };
}

export const commandInsertSql = `INSERT INTO commands (id, sandbox_id, argv_json, cwd, background, status, pid, exit_code,
  timed_out, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export function commandInsertValues(c: CommandRecord): unknown[] {
  return [
    c.id,
    c.sandboxId,
    toJsonText(c.argv),
    c.cwd,
    c.background ? 1 : 0,
    c.status,
    c.pid,
    c.exitCode,
    c.timedOut ? 1 : 0,
    c.startedAt,
    c.finishedAt,
  ];
}

/** An INSERT of `rows` egress log entries (each with the values of `egressInsertValues`). */
export function egressInsertSql(rows: number): string {
  const values = Array.from({ length: rows }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ");
  return `INSERT INTO egress_log (org_id, sandbox_id, at, protocol, ip, port, domain, decision, rule, bytes_out,
    bytes_in, detail) VALUES ${values}`;
}

export function egressInsertValues(e: Omit<EgressLogRecord, "seq">): unknown[] {
  return [
    e.orgId,
    e.sandboxId,
    e.at,
    e.protocol,
    e.ip,
    e.port,
    e.domain,
    e.decision,
    e.rule,
    e.bytesOut,
    e.bytesIn,
    e.detail,
  ];
}

export interface NodeRow {
  id: string;
  url: string;
  state: NodeRecord["state"];
  epoch: number | string;
  lease_expires_at: number | string;
  capacity_json: JsonColumn;
  labels_json: JsonColumn;
  version: string;
  started_at: number | string;
  heartbeat_at: number | string;
}

/** PostgreSQL returns BIGINT columns as strings. */
const int = (v: number | string) => Number(v);

export function nodeFromRow(r: NodeRow): NodeRecord {
  return {
    id: r.id,
    url: r.url,
    state: r.state,
    epoch: int(r.epoch),
    leaseExpiresAt: int(r.lease_expires_at),
    capacity: fromJson<NodeCapacity>(r.capacity_json),
    labels: fromJson<Record<string, string>>(r.labels_json),
    version: r.version,
    startedAt: int(r.started_at),
    heartbeatAt: int(r.heartbeat_at),
  };
}

export function orgFromRow(r: OrgRow): OrgRecord {
  return { id: r.id, name: r.name, createdAt: r.created_at };
}

export function sandboxFromRow(r: SandboxRow): SandboxRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    status: r.status,
    reason: r.reason,
    template: r.template,
    vcpus: r.vcpus,
    memoryMb: r.memory_mb,
    diskMb: r.disk_mb,
    env: fromJson<Record<string, string>>(r.env_json),
    metadata: fromJson<Record<string, string>>(r.metadata_json),
    cwd: r.cwd,
    timeoutMs: r.timeout_ms,
    networkPolicy: fromJson<NetworkPolicy>(r.network_policy_json),
    timeoutAction: r.timeout_action,
    lifecycle: r.lifecycle,
    idleTimeoutMs: r.idle_timeout_ms,
    autoResume: flag(r.auto_resume),
    hibernate: flag(r.hibernate),
    ports: fromJson<number[]>(r.ports_json),
    publicPorts: flag(r.public_ports),
    trafficToken: r.traffic_token,
    netIndex: r.net_index,
    nodeId: r.node_id,
    agentToken: r.agent_token,
    user: r.user_name,
    allPorts: flag(r.all_ports),
    mainCommandId: r.main_command_id,
    volumes: fromJson<SandboxVolumeRecord[]>(r.volumes_json),
    desktop: r.desktop_json === null ? null : fromJson<SandboxDesktop>(r.desktop_json),
    createdAt: r.created_at,
    startedAt: r.started_at,
    expiresAt: r.expires_at,
    destroyedAt: r.destroyed_at,
  };
}

export function commandFromRow(r: CommandRow): CommandRecord {
  return {
    id: r.id,
    sandboxId: r.sandbox_id,
    argv: fromJson<string[]>(r.argv_json),
    cwd: r.cwd,
    background: flag(r.background),
    status: r.status,
    pid: r.pid,
    exitCode: r.exit_code,
    timedOut: flag(r.timed_out),
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}

export function volumeFromRow(r: VolumeRow): VolumeRecord {
  return { id: r.id, orgId: r.org_id, name: r.name, sizeMb: r.size_mb, createdAt: r.created_at };
}

export function desktopStreamFromRow(r: DesktopStreamRow): DesktopStreamRecord {
  return {
    id: r.id,
    sandboxId: r.sandbox_id,
    viewOnly: flag(r.view_only),
    token: r.token,
    commandId: r.command_id,
    startedAt: r.started_at,
    stoppedAt: r.stopped_at,
  };
}

/** The desktop streams table: the same in both databases (flags and times in each one's types). */
export const desktopStreamSql = {
  /** Stops the sandbox's live stream (the one a new stream replaces): its token opens nothing after this. */
  stopLive: "UPDATE desktop_streams SET stopped_at = ? WHERE sandbox_id = ? AND stopped_at IS NULL",
  insert: `INSERT INTO desktop_streams (id, sandbox_id, view_only, token, command_id, started_at, stopped_at)
    VALUES (?, ?, ?, ?, ?, ?, NULL)`,
  insertValues: (r: DesktopStreamRecord) => [r.id, r.sandboxId, r.viewOnly ? 1 : 0, r.token, r.commandId, r.startedAt],
  live: "SELECT * FROM desktop_streams WHERE sandbox_id = ? AND stopped_at IS NULL",
  stop: "UPDATE desktop_streams SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
};

export function idempotencyFromRow(r: IdempotencyRow): IdempotencyRecord {
  return {
    orgId: r.org_id,
    key: r.key,
    requestHash: r.request_hash,
    owner: r.owner,
    responseStatus: r.response_status,
    responseBody: r.response_body,
    createdAt: r.created_at,
  };
}

export function egressFromRow(r: EgressLogRow): EgressLogRecord {
  return {
    seq: r.seq,
    orgId: r.org_id,
    sandboxId: r.sandbox_id,
    at: r.at,
    protocol: r.protocol,
    ip: r.ip,
    port: r.port,
    domain: r.domain,
    decision: r.decision,
    rule: r.rule,
    bytesOut: r.bytes_out,
    bytesIn: r.bytes_in,
    detail: r.detail,
  };
}

export function eventFromRow(r: EventRow): EventRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    sandboxId: r.sandbox_id,
    type: r.type,
    at: r.at,
    data: fromJson<Record<string, unknown>>(r.data_json),
  };
}

export function webhookFromRow(r: WebhookRow): WebhookRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    url: r.url,
    secret: r.secret,
    events: fromJson<EventType[]>(r.events_json),
    createdAt: r.created_at,
  };
}

export function deliveryFromRow(r: DeliveryRow): WebhookDeliveryRecord {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    eventId: r.event_id,
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
  };
}

export function attemptFromRow(r: AttemptRow): DeliveryAttemptRecord {
  return {
    deliveryId: r.delivery_id,
    eventId: r.event_id,
    eventType: r.event_type,
    attempt: r.attempt,
    at: r.at,
    statusCode: r.status_code,
    error: r.error,
    durationMs: r.duration_ms,
    state: r.state,
    nextAttemptAt: r.next_attempt_at,
  };
}

/** An organisation by API key hash. */
export const orgByKeySql = "SELECT o.* FROM api_keys k JOIN orgs o ON o.id = k.org_id WHERE k.key_hash = ?";

export const quotaSql = "SELECT max_sandboxes, max_vcpus, max_memory_mb FROM org_quotas WHERE org_id = ?";

export interface QuotaRow {
  max_sandboxes: number | null;
  max_vcpus: number | null;
  max_memory_mb: number | null;
}

export function quotaFromRow(row: QuotaRow | undefined): OrgQuota {
  return {
    maxSandboxes: row?.max_sandboxes ?? null,
    maxVcpus: row?.max_vcpus ?? null,
    maxMemoryMb: row?.max_memory_mb ?? null,
  };
}

/** (org id, max sandboxes, max vCPUs, max memory) */
export const quotaUpsertSql = `INSERT INTO org_quotas (org_id, max_sandboxes, max_vcpus, max_memory_mb) VALUES (?, ?, ?, ?)
  ON CONFLICT(org_id) DO UPDATE SET max_sandboxes = excluded.max_sandboxes, max_vcpus = excluded.max_vcpus,
  max_memory_mb = excluded.max_memory_mb`;

/** (org id, sandbox id, type, at, data) */
export const eventInsertSql = "INSERT INTO events (org_id, sandbox_id, type, at, data_json) VALUES (?, ?, ?, ?, ?)";

export function eventInsertValues(d: EventDraft): unknown[] {
  return [d.orgId, d.sandboxId, d.type, d.at, toJsonText(d.data)];
}

/** A delivery of an event to a webhook, due at once: (delivery id, webhook id, event id, at). */
export const deliveryEnqueueSql = `INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, next_attempt_at)
  VALUES (?, ?, ?, 'pending', 0, ?)`;

/** (id, org id, url, secret, event types, created at) */
export const webhookInsertSql =
  "INSERT INTO webhooks (id, org_id, url, secret, events_json, created_at) VALUES (?, ?, ?, ?, ?, ?)";

export function webhookInsertValues(w: WebhookRecord): unknown[] {
  return [w.id, w.orgId, w.url, w.secret, toJsonText(w.events), w.createdAt];
}

/** A webhook's delivery log, newest first: (webhook id, limit) → AttemptRow. */
export const attemptsSql = `SELECT a.*, d.event_id, e.type AS event_type FROM webhook_attempts a
  JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id
  WHERE a.webhook_id = ? ORDER BY a.seq DESC LIMIT ?`;

export const attemptInsertSql = `INSERT INTO webhook_attempts (delivery_id, webhook_id, attempt, at, status_code, error,
  duration_ms, state, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export function attemptInsertValues(a: DeliveryAttemptRecord, webhookId: string): unknown[] {
  return [a.deliveryId, webhookId, a.attempt, a.at, a.statusCode, a.error, a.durationMs, a.state, a.nextAttemptAt];
}

/** The delivery after an attempt: (state, attempts, next attempt, delivery id). */
export const deliveryAfterAttemptSql =
  "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ? WHERE id = ?";

export function deliveryAfterAttemptValues(a: DeliveryAttemptRecord): unknown[] {
  // A delivery to be retried is pending again; the attempt log keeps that it was a retry.
  return [a.state === "retrying" ? "pending" : a.state, a.attempt, a.nextAttemptAt, a.deliveryId];
}

/** Whether a webhook receives events of this type (no types: all). */
export function webhookWants(hook: WebhookRecord, type: EventType): boolean {
  return hook.events.length === 0 || hook.events.includes(type);
}

/** `x IN (?, ?)` for a list of values. */
export function inList(column: string, values: readonly unknown[]): string {
  return `${column} IN (${values.map(() => "?").join(", ")})`;
}

/** A WHERE clause (`?` placeholders) and its values. */
export interface Where {
  sql: string;
  values: unknown[];
}

/**
 * The conditions of a sandbox list. `metadataEquals` is the database's way of comparing one key of the
 * metadata JSON with a value (two placeholders: key, value).
 */
export function sandboxListWhere(orgId: string, filter: SandboxFilter, metadataEquals: string): Where {
  const where = ["org_id = ?"];
  const values: unknown[] = [orgId];
  if (filter.statuses?.length) {
    where.push(inList("status", filter.statuses));
    values.push(...filter.statuses);
  } else if (!filter.includeDestroyed) {
    where.push("status <> 'destroyed'");
  }
  if (filter.nodeId !== undefined) {
    where.push("node_id = ?");
    values.push(filter.nodeId);
  }
  for (const [key, value] of Object.entries(filter.metadata ?? {})) {
    where.push(metadataEquals);
    values.push(key, value);
  }
  return { sql: where.join(" AND "), values };
}

export function eventListWhere(orgId: string, f: EventFilter): Where {
  const where = ["org_id = ?"];
  const values: unknown[] = [orgId];
  if (f.sandboxId !== undefined) {
    where.push("sandbox_id = ?");
    values.push(f.sandboxId);
  }
  if (f.types?.length) {
    where.push(inList("type", f.types));
    values.push(...f.types);
  }
  if (f.since !== undefined) {
    where.push("at >= ?");
    values.push(f.since);
  }
  if (f.afterId !== undefined) {
    where.push("id > ?");
    values.push(f.afterId);
  }
  if (f.beforeId !== undefined) {
    where.push("id < ?");
    values.push(f.beforeId);
  }
  return { sql: where.join(" AND "), values };
}

export function egressListWhere(orgId: string, filter: EgressLogFilter): Where {
  const where = ["org_id = ?", "seq > ?"];
  const values: unknown[] = [orgId, filter.afterSeq ?? 0];
  if (filter.sandboxId) {
    where.push("sandbox_id = ?");
    values.push(filter.sandboxId);
  }
  if (filter.since !== undefined) {
    where.push("at >= ?");
    values.push(filter.since);
  }
  if (filter.decision) {
    where.push("decision = ?");
    values.push(filter.decision);
  }
  return { sql: where.join(" AND "), values };
}

/** The sandbox's current usage of an organisation's quota: (org id) → { sandboxes, vcpus, memory }. */
export const quotaUsageSql = `SELECT count(*) AS sandboxes, coalesce(sum(vcpus), 0) AS vcpus,
  coalesce(sum(memory_mb), 0) AS memory FROM sandboxes WHERE org_id = ? AND ${inList("status", QUOTA_STATUSES)}`;

export function quotaUsageValues(orgId: string): unknown[] {
  return [orgId, ...QUOTA_STATUSES];
}

/** Throws QuotaExceededError when one more sandbox of this size would take `usage` over `quota`. */
export function assertWithinQuota(
  quota: OrgQuota,
  usage: { sandboxes: number; vcpus: number; memory: number },
  vcpus: number,
  memoryMb: number,
) {
  const checks: [keyof OrgQuota, number | null, number, number][] = [
    ["maxSandboxes", quota.maxSandboxes, Number(usage.sandboxes), 1],
    ["maxVcpus", quota.maxVcpus, Number(usage.vcpus), vcpus],
    ["maxMemoryMb", quota.maxMemoryMb, Number(usage.memory), memoryMb],
  ];
  for (const [limit, max, used, wanted] of checks) {
    if (max !== null && used + wanted > max) throw new QuotaExceededError(limit, max, used);
  }
}

/**
 * Throws NoCapacityError when one more sandbox of this size would take the node over what it may promise.
 * A node that never registered (no capacity known) takes it.
 */
export function assertNodeHasRoom(
  nodeId: string,
  capacity: NodeCapacity | undefined,
  allocated: NodeCapacity,
  request: ResourceRequest,
  overcommit: Overcommit,
) {
  if (!capacity) return;
  const short = shortfallOf(capacity, allocated, request, overcommit);
  if (short) throw new NoCapacityError(nodeId, short);
}

/** The lowest network slot not in `used` (sorted ascending); throws when it would be above `max`. */
export function lowestFreeSlot(used: number[], max: number): number {
  let slot = 0;
  for (const n of used) {
    if (n !== slot) break;
    slot++;
  }
  if (slot > max) throw new Error("no free network slot");
  return slot;
}

/** What the sandboxes of each node hold (see COMPUTE_STATUSES and RESIDENT_STATUSES), grouped by node. */
const allocationSelect = `SELECT node_id,
  coalesce(sum(CASE WHEN ${inList("status", COMPUTE_STATUSES)} THEN vcpus ELSE 0 END), 0) AS vcpus,
  coalesce(sum(CASE WHEN ${inList("status", COMPUTE_STATUSES)} THEN memory_mb ELSE 0 END), 0) AS memory_mb,
  coalesce(sum(disk_mb), 0) AS disk_mb, count(*) AS sandboxes
  FROM sandboxes WHERE ${inList("status", RESIDENT_STATUSES)}`;

/** Every node's allocation: () → AllocationRow per node that holds any sandbox. */
export const allocationsSql = `${allocationSelect} GROUP BY node_id`;
export const allocationsValues = [...COMPUTE_STATUSES, ...COMPUTE_STATUSES, ...RESIDENT_STATUSES];
/** One node's allocation: (node id) → AllocationRow, or no row when it holds none. */
export const nodeAllocationSql = `${allocationSelect} AND node_id = ? GROUP BY node_id`;
export const nodeAllocationValues = (nodeId: string) => [...allocationsValues, nodeId];

export interface AllocationRow {
  node_id: string;
  vcpus: number | string;
  memory_mb: number | string;
  disk_mb: number | string;
  sandboxes: number | string;
}

export function allocationFromRow(r: AllocationRow | undefined): NodeCapacity {
  if (!r) return { vcpus: 0, memoryMb: 0, diskMb: 0, sandboxes: 0 };
  return { vcpus: int(r.vcpus), memoryMb: int(r.memory_mb), diskMb: int(r.disk_mb), sandboxes: int(r.sandboxes) };
}

/** Columns of a node's registration, in the order of `nodeUpsertSql`'s first placeholders. */
export function nodeRegistrationValues(node: NodeRegistration): unknown[] {
  return [node.id, node.url, toJsonText(node.capacity), toJsonText(node.labels), node.version, node.startedAt];
}

/** Sandboxes per node and status, with what they hold: one row per node and status. */
export const nodeUsageSql = `SELECT node_id, status, count(*) AS n, coalesce(sum(vcpus), 0) AS vcpus,
  coalesce(sum(memory_mb), 0) AS memory_mb FROM sandboxes WHERE status <> 'destroyed' GROUP BY node_id, status`;

export interface NodeUsageRow {
  node_id: string;
  status: SandboxStatus;
  n: number;
  vcpus: number;
  memory_mb: number;
}

export function nodeUsageFromRows(rows: NodeUsageRow[]): NodeUsage[] {
  const loads = new Map<string, NodeUsage>();
  for (const r of rows) {
    let load = loads.get(r.node_id);
    if (!load) {
      load = { nodeId: r.node_id, sandboxes: {}, vcpus: 0, memoryMb: 0 };
      loads.set(r.node_id, load);
    }
    load.sandboxes[r.status] = Number(r.n);
    if (NODE_BOUND_STATUSES.includes(r.status)) {
      load.vcpus += Number(r.vcpus);
      load.memoryMb += Number(r.memory_mb);
    }
  }
  return [...loads.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
}
