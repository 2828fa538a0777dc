import type { EventType, NetworkPolicy, SandboxStatus } from "@sandpit/contract";
import type { TransitionCause } from "./lifecycle-events.js";

export interface OrgRecord {
  id: string;
  name: string;
  createdAt: number;
}

export interface SandboxRecord {
  id: string;
  orgId: string;
  status: SandboxStatus;
  reason: string | null;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  env: Record<string, string>;
  metadata: Record<string, string>;
  cwd: string;
  timeoutMs: number;
  networkPolicy: NetworkPolicy;
  timeoutAction: "destroy" | "pause";
  lifecycle: "ephemeral" | "persistent";
  idleTimeoutMs: number | null;
  autoResume: boolean;
  ports: number[];
  /** Every port is reachable through the proxy, not only `ports`. */
  allPorts: boolean;
  publicPorts: boolean;
  trafficToken: string;
  /** Slot of the sandbox's veth pair; null once its network is released. */
  netIndex: number | null;
  agentToken: string;
  /** Default user of commands (name or uid); null runs them as root. */
  user: string | null;
  /** The background command started from the image's or request's entrypoint at create. */
  mainCommandId: string | null;
  /** Volumes and host directories mounted into the sandbox; kept for resume, restart and snapshots. */
  volumes: SandboxVolumeRecord[];
  createdAt: number;
  startedAt: number | null;
  expiresAt: number | null;
  destroyedAt: number | null;
}

/**
 * One mount of a sandbox as recorded: a named volume by id (a volume deleted and made again under the
 * same name is another volume), or a host directory.
 */
export interface SandboxVolumeRecord {
  volumeId?: string;
  /** The volume's name when it was mounted (for display). */
  name?: string;
  hostPath?: string;
  mountPath: string;
  readOnly: boolean;
  subPath?: string;
}

/** A named volume of an organisation: a directory on its own size-capped disk image. */
export interface VolumeRecord {
  id: string;
  orgId: string;
  name: string;
  sizeMb: number;
  createdAt: number;
}

/** Thrown by insertVolume when the organisation already has a volume of that name. */
export class VolumeNameTakenError extends Error {
  constructor(readonly volumeName: string) {
    super(`volume ${volumeName} already exists`);
  }
}

/** Thrown by insertSandbox when a volume it mounts no longer exists. */
export class VolumeMissingError extends Error {
  constructor(readonly volumeId: string) {
    super(`volume ${volumeId} no longer exists`);
  }
}

export interface CommandRecord {
  id: string;
  sandboxId: string;
  argv: string[];
  cwd: string;
  background: boolean;
  status: "running" | "exited" | "killed" | "lost";
  pid: number | null;
  exitCode: number | null;
  timedOut: boolean;
  startedAt: number;
  finishedAt: number | null;
}

export interface IdempotencyRecord {
  orgId: string;
  key: string;
  requestHash: string;
  /** Server process that is answering it; null once the response is stored. */
  owner: string | null;
  responseStatus: number | null;
  responseBody: string | null;
  createdAt: number;
}

export interface SnapshotRecord {
  id: string;
  orgId: string;
  name: string | null;
  sourceSandboxId: string;
  status: "creating" | "ready" | "failed";
  template: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  env: Record<string, string>;
  cwd: string;
  /** Default user of commands in the source (absent in snapshots taken before users existed). */
  user?: string | null;
  networkPolicy: NetworkPolicy;
  /** The agent inside the snapshot was started with this token; its children keep it. */
  agentToken: string;
  /** What the source mounted; its children mount the same (absent in snapshots taken before volumes). */
  volumes?: SandboxVolumeRecord[];
  sizeBytes: number | null;
  createdAt: number;
}

/** One outbound connection attempt (or brokered request, or DNS decision) of a sandbox. */
export interface EgressLogRecord {
  seq: number;
  orgId: string;
  sandboxId: string;
  at: number;
  protocol: "tcp" | "udp" | "icmp" | "http" | "https" | "dns";
  ip: string | null;
  port: number | null;
  domain: string | null;
  decision: "allowed" | "denied";
  rule: string;
  bytesOut: number | null;
  bytesIn: number | null;
  detail: string | null;
}

export interface EgressLogFilter {
  sandboxId?: string;
  since?: number;
  decision?: "allowed" | "denied";
  /** Only entries after this sequence number (for following). */
  afterSeq?: number;
  limit?: number;
}

export interface WarmPoolRecord {
  id: string;
  template: string;
  size: number;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}

/** A lifecycle event of a sandbox, recorded with the status change that caused it. */
export interface EventRecord {
  /** Increasing, never reused: the cursor of lists and streams. */
  id: number;
  orgId: string;
  sandboxId: string;
  type: EventType;
  at: number;
  data: Record<string, unknown>;
}

export interface EventFilter {
  sandboxId?: string;
  types?: EventType[];
  /** Only events at or after this time. */
  since?: number;
  /** Only events with a larger id. */
  afterId?: number;
  /** Only events with a smaller id. */
  beforeId?: number;
  order: "asc" | "desc";
  limit: number;
}

export interface WebhookRecord {
  id: string;
  orgId: string;
  url: string;
  /** Key of the HMAC-SHA256 signature. */
  secret: string;
  /** Event types it receives; empty: all. */
  events: EventType[];
  createdAt: number;
}

/** One event to send to one webhook: queued with the event, retried until delivered or out of attempts. */
export interface WebhookDeliveryRecord {
  id: string;
  webhookId: string;
  eventId: number;
  state: "pending" | "delivered" | "failed";
  /** Attempts made so far. */
  attempts: number;
  nextAttemptAt: number | null;
}

/** A due delivery with what sending it takes. */
export interface ClaimedDelivery {
  delivery: WebhookDeliveryRecord;
  webhook: WebhookRecord;
  event: EventRecord;
}

export interface DeliveryAttemptRecord {
  deliveryId: string;
  eventId: number;
  eventType: EventType;
  attempt: number;
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** The delivery's state after this attempt. */
  state: "delivered" | "retrying" | "failed";
  nextAttemptAt: number | null;
}

/** Per-organisation limits; null means no limit. */
export interface OrgQuota {
  maxSandboxes: number | null;
  maxVcpus: number | null;
  maxMemoryMb: number | null;
}

/** Thrown by insertSandbox when the organisation would go over a quota. */
export class QuotaExceededError extends Error {
  constructor(
    readonly limit: keyof OrgQuota,
    readonly max: number,
    readonly current: number,
  ) {
    super(`quota exceeded: ${limit} is ${max}, ${current} in use`);
  }
}

export interface SandboxFilter {
  statuses?: SandboxStatus[];
  metadata?: Record<string, string>;
  includeDestroyed?: boolean;
  limit?: number;
}

export type SandboxPatch = Partial<Omit<SandboxRecord, "id" | "orgId" | "createdAt">>;

/**
 * Durable state. Implementations: SQLite (embedded default, sqlite-store.ts) and PostgreSQL
 * (pg-store.ts); tests/store/store-contract.test.ts runs the same cases against both.
 */
export interface Store {
  ensureOrg(name: string): Promise<OrgRecord>;
  addApiKey(orgId: string, keyHash: string, label: string): Promise<void>;
  orgByApiKeyHash(keyHash: string): Promise<OrgRecord | undefined>;
  countApiKeys(): Promise<number>;

  /**
   * Inserts a sandbox and assigns it the lowest free network slot, atomically with the quota check:
   * concurrent creates never take an organisation over its quota (QuotaExceededError). Also atomically
   * checks that every volume it mounts still exists (VolumeMissingError).
   */
  insertSandbox(record: Omit<SandboxRecord, "netIndex">, maxNetIndex: number, quota: OrgQuota): Promise<SandboxRecord>;
  /** The organisation's own quota (null fields: the server default applies). */
  getOrgQuota(orgId: string): Promise<OrgQuota>;
  setOrgQuota(orgId: string, quota: OrgQuota): Promise<void>;
  getSandbox(id: string): Promise<SandboxRecord | undefined>;
  listSandboxes(orgId: string, filter: SandboxFilter): Promise<SandboxRecord[]>;
  sandboxesInStatus(statuses: SandboxStatus[]): Promise<SandboxRecord[]>;
  /**
   * Applies the patch; when `onlyIf` is given, only while the sandbox is in one of those statuses.
   * Returns the updated record, or undefined when the condition did not hold. A status change records
   * its lifecycle event (and queues its webhook deliveries) in the same transaction; `cause` says why
   * when the record does not (a pause's reason, a destroy's reason).
   */
  updateSandbox(
    id: string,
    patch: SandboxPatch,
    onlyIf?: SandboxStatus[],
    cause?: TransitionCause,
  ): Promise<SandboxRecord | undefined>;
  /** Removes destroyed sandboxes (and their commands) destroyed before `before`. */
  purgeDestroyed(before: number): Promise<number>;

  insertCommand(record: CommandRecord): Promise<void>;
  updateCommand(id: string, patch: Partial<Omit<CommandRecord, "id" | "sandboxId">>): Promise<void>;
  getCommand(sandboxId: string, id: string): Promise<CommandRecord | undefined>;
  listCommands(sandboxId: string): Promise<CommandRecord[]>;
  markRunningCommandsLost(sandboxId: string): Promise<void>;

  /**
   * Claims an idempotency key for `owner`, atomically. Returns the existing record when the key is
   * already there (the caller decides: replay, wait, mismatch, or take over from a dead owner).
   */
  claimIdempotencyKey(
    record: Omit<IdempotencyRecord, "responseStatus" | "responseBody">,
  ): Promise<{ claimed: true } | { claimed: false; existing: IdempotencyRecord }>;
  /** Moves an unanswered key from a dead owner to `owner`; false when someone else got there first. */
  takeOverIdempotencyKey(orgId: string, key: string, from: string | null, owner: string): Promise<boolean>;
  completeIdempotencyKey(orgId: string, key: string, status: number, body: string): Promise<void>;
  releaseIdempotencyKey(orgId: string, key: string): Promise<void>;
  getIdempotencyKey(orgId: string, key: string): Promise<IdempotencyRecord | undefined>;
  purgeIdempotencyKeys(before: number): Promise<void>;

  /**
   * Moves one ready sandbox of a pool (held by `poolOrgId`, tagged with the pool id) to an organisation
   * and applies `patch`, atomically with the quota check. Undefined when the pool is empty.
   */
  checkoutPooled(
    poolOrgId: string,
    poolId: string,
    orgId: string,
    patch: SandboxPatch,
    quota: OrgQuota,
  ): Promise<SandboxRecord | undefined>;
  listWarmPools(): Promise<WarmPoolRecord[]>;
  putWarmPool(pool: WarmPoolRecord): Promise<void>;
  deleteWarmPool(id: string): Promise<void>;

  insertSnapshot(record: SnapshotRecord): Promise<void>;
  updateSnapshot(id: string, patch: Partial<Pick<SnapshotRecord, "status" | "sizeBytes">>): Promise<void>;
  getSnapshot(id: string): Promise<SnapshotRecord | undefined>;
  listSnapshots(orgId: string): Promise<SnapshotRecord[]>;
  deleteSnapshot(id: string): Promise<void>;

  /** Events of an organisation, by id in the filter's order. */
  listEvents(orgId: string, filter: EventFilter): Promise<EventRecord[]>;
  /** The largest event id of the organisation (0 when it has none). */
  latestEventId(orgId: string): Promise<number>;
  /** Removes events recorded before `before`, with their deliveries. */
  purgeEvents(before: number): Promise<void>;
  /** Called after every commit that recorded events, with those events; returns the unsubscriber. */
  onEvents(listener: (events: EventRecord[]) => void): () => void;

  insertWebhook(record: WebhookRecord): Promise<void>;
  getWebhook(id: string): Promise<WebhookRecord | undefined>;
  listWebhooks(orgId: string): Promise<WebhookRecord[]>;
  /** Removes the webhook, its queued deliveries and its delivery log. */
  deleteWebhook(id: string): Promise<void>;
  /**
   * Takes up to `limit` pending deliveries that are due at `now` and leases them until `leaseUntil` (so
   * that they are sent again after a crash during the attempt, but not twice meanwhile).
   */
  claimDueDeliveries(now: number, leaseUntil: number, limit: number): Promise<ClaimedDelivery[]>;
  /** When the next pending delivery is due; undefined when none is pending. */
  nextDeliveryDue(): Promise<number | undefined>;
  /** Logs an attempt and moves its delivery to the attempt's state. */
  recordDeliveryAttempt(attempt: DeliveryAttemptRecord): Promise<void>;
  /** A webhook's delivery log, newest first. */
  listDeliveryAttempts(webhookId: string, limit: number): Promise<DeliveryAttemptRecord[]>;

  /** Throws VolumeNameTakenError when the organisation has a volume of that name. */
  insertVolume(record: VolumeRecord): Promise<void>;
  getVolume(id: string): Promise<VolumeRecord | undefined>;
  getVolumeByName(orgId: string, name: string): Promise<VolumeRecord | undefined>;
  /** One organisation's volumes, or every volume when orgId is undefined. */
  listVolumes(orgId: string | undefined): Promise<VolumeRecord[]>;
  /** Ids of the sandboxes in one of `statuses` that mount the volume. */
  volumeUsers(volumeId: string, statuses: SandboxStatus[]): Promise<string[]>;
  /**
   * Deletes the volume's record unless a sandbox in one of `statuses` mounts it, atomically with
   * insertSandbox's check: a create and a delete never both succeed. Returns the users that kept it.
   */
  deleteVolumeUnlessUsed(id: string, statuses: SandboxStatus[]): Promise<{ deleted: boolean; users: string[] }>;

  insertEgressLog(entries: Omit<EgressLogRecord, "seq">[]): Promise<void>;
  listEgressLog(orgId: string, filter: EgressLogFilter): Promise<EgressLogRecord[]>;
  purgeEgressLog(before: number): Promise<void>;
  /** Sets the byte counts of the entries of these flows (matched by sandbox and `detail`). */
  updateEgressBytes(updates: { sandboxId: string; detail: string; bytesOut: number; bytesIn: number }[]): Promise<void>;

  close(): Promise<void>;
}
