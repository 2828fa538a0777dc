import type { SandboxStatus } from "@sandpit/contract";
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
import type { TransitionCause } from "../domain/lifecycle-events.js";

export interface SandboxFilter {
  statuses?: SandboxStatus[];
  metadata?: Record<string, string>;
  includeDestroyed?: boolean;
  /** Only the sandboxes living on this node. */
  nodeId?: string;
  limit?: number;
}

/** A node the cluster declared lost, with its sandboxes that turned `error` (`node_lost`) with it. */
export interface LostNode {
  node: NodeRecord;
  sandboxIds: string[];
}

/** What a node tells about itself when it (re-)registers. */
export type NodeRegistration = Pick<NodeRecord, "id" | "url" | "capacity" | "labels" | "version" | "startedAt">;

export type SandboxPatch = Partial<Omit<SandboxRecord, "id" | "orgId" | "createdAt">>;

/**
 * Durable state. Implementations: SQLite (embedded default, sqlite-store.ts) and PostgreSQL
 * (pg-store.ts); tests/store/store-contract.test.ts runs the same cases against both.
 */
export interface Store {
  /**
   * The node this store works for: new sandboxes are inserted on it, and the node-local questions
   * (sandboxesInStatus, net slots, warm-pool checkouts) are about it.
   */
  readonly nodeId: string;

  /**
   * Registers the node (again): a new epoch, a fresh lease of `leaseTtlMs` (the database's clock), state
   * `ready` unless an operator drained it.
   */
  registerNode(node: NodeRegistration, leaseTtlMs: number): Promise<NodeRecord>;
  /**
   * Extends the node's lease when it still holds `epoch` and was not declared lost; undefined otherwise
   * (the node is fenced and must register again).
   */
  renewNodeLease(id: string, epoch: number, leaseTtlMs: number): Promise<NodeRecord | undefined>;
  /**
   * From now on, this node's writes about its own sandboxes (updateSandbox, insertSandbox, checkoutPooled)
   * apply only while it holds the lease of `epoch`: same epoch, not lost, not run out by the database's
   * clock — checked in the write's own statement. A refused write throws NodeFencedError. A store that is
   * its host's only node (SQLite) has no one to be fenced from: there it changes nothing.
   */
  fence(epoch: number): void;
  getNode(id: string): Promise<NodeRecord | undefined>;
  listNodes(): Promise<NodeRecord[]>;
  /** Sets the state; with `onlyIf`, only from one of those states (undefined when the condition failed). */
  setNodeState(id: string, state: NodeRecord["state"], onlyIf?: NodeRecord["state"][]): Promise<NodeRecord | undefined>;
  /** Sandboxes on each node by status, and the vCPUs and memory they hold (for operators). */
  nodeUsage(): Promise<NodeUsage[]>;
  /**
   * Declares lost every other node whose lease ran out more than `graceMs` ago (the database's clock) and,
   * in the same transaction, turns its creating/running/pausing/resuming sandboxes `error` with reason
   * `node_lost` (conditional updates: each is written, with its event, once). Paused sandboxes stay paused.
   */
  declareLostNodes(graceMs: number): Promise<LostNode[]>;
  /**
   * Takes or keeps the cluster-wide lease `name` for this node for `ttlMs` (the database's clock): true
   * while this node holds it. A lease another node holds is taken only once it ran out. SQLite: always true.
   */
  holdClusterLease(name: string, ttlMs: number): Promise<boolean>;
  /** The node a sandbox lives on and how to reach it (one query: it runs for every forwarded request). */
  sandboxOwner(sandboxId: string): Promise<SandboxOwner | undefined>;
  /**
   * A key every node of the cluster shares (tokens one node issues open the sandbox on any node): the
   * stored one, or `initial` stored now when there is none yet (the first writer wins; all get its key).
   */
  sharedKey(name: string, initial: Buffer): Promise<Buffer>;

  ensureOrg(name: string): Promise<OrgRecord>;
  addApiKey(orgId: string, keyHash: string, label: string): Promise<void>;
  orgByApiKeyHash(keyHash: string): Promise<OrgRecord | undefined>;
  countApiKeys(): Promise<number>;

  /**
   * Inserts a sandbox on this node and assigns it the lowest free network slot, atomically with the quota
   * check and the node's capacity check: concurrent creates, on this node or any other, never take an
   * organisation over its quota (QuotaExceededError) nor a node over its capacity × `overcommit`
   * (NoCapacityError; a node that has not registered has no known capacity and is not checked). Also
   * atomically checks that every volume it mounts still exists (VolumeMissingError).
   */
  insertSandbox(
    record: Omit<SandboxRecord, "netIndex" | "nodeId">,
    maxNetIndex: number,
    quota: OrgQuota,
    overcommit: Overcommit,
  ): Promise<SandboxRecord>;
  /** Every registered node with what its sandboxes hold and whether its lease runs (for placement). */
  nodeLoads(): Promise<NodeLoad[]>;
  /** The organisation's own quota (null fields: the server default applies). */
  getOrgQuota(orgId: string): Promise<OrgQuota>;
  setOrgQuota(orgId: string, quota: OrgQuota): Promise<void>;
  getSandbox(id: string): Promise<SandboxRecord | undefined>;
  listSandboxes(orgId: string, filter: SandboxFilter): Promise<SandboxRecord[]>;
  /** This node's sandboxes in those statuses. */
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
  /**
   * Takes a paused sandbox over from node `from` to this store's node, with a free network slot of this
   * node, atomically: only while it is paused on `from` and `from` is not a ready node with a live lease
   * (it is draining, lost, or its lease ran out), so that two nodes never both take it and a node that
   * serves its sandboxes keeps them. Records `sandbox.moved`. Undefined when the condition did not hold.
   */
  moveSandboxHere(id: string, from: string, maxNetIndex: number): Promise<SandboxRecord | undefined>;
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

  /** Makes `record` its sandbox's live desktop stream; the live one it replaces is stopped at its start. */
  replaceDesktopStream(record: DesktopStreamRecord): Promise<void>;
  /** The sandbox's live desktop stream (started and not stopped). */
  liveDesktopStream(sandboxId: string): Promise<DesktopStreamRecord | undefined>;
  /** Stops the stream unless it was already; whether this call stopped it. */
  stopDesktopStream(id: string, at: number): Promise<boolean>;

  insertEgressLog(entries: Omit<EgressLogRecord, "seq">[]): Promise<void>;
  listEgressLog(orgId: string, filter: EgressLogFilter): Promise<EgressLogRecord[]>;
  purgeEgressLog(before: number): Promise<void>;
  /** Sets the byte counts of the entries of these flows (matched by sandbox and `detail`). */
  updateEgressBytes(updates: { sandboxId: string; detail: string; bytesOut: number; bytesIn: number }[]): Promise<void>;

  close(): Promise<void>;
}
