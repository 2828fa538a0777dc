import {
  type CreateSandboxParams,
  MAX_METADATA_ENTRIES,
  type MetadataPatch,
  type NetworkPolicy,
  REDACTED,
  redactPolicy,
  type Sandbox,
  type SandboxStatus,
} from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import { type AgentClient, AgentUnreachableError } from "../agent/agent-client.js";
import {
  describeShortfall,
  NoCapacityError,
  type OrgQuota,
  type OrgRecord,
  type Overcommit,
  QuotaExceededError,
  type SandboxDesktop,
  type SandboxRecord,
  type SnapshotRecord,
  VolumeMissingError,
} from "../domain/index.js";
import { ApiError, noCapacity, notFound } from "../errors.js";
import { iso, now } from "../lib/clock.js";
import { newSandboxId, newToken } from "../lib/ids.js";
import { currentPhases, phase } from "../lib/phases.js";
import { keyedToken, tokensEqual } from "../lib/server-key.js";
import { MAX_SLOTS } from "../network/addressing.js";
import { SeedTooLargeError } from "../runtime/rootfs.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import { VolumeMountError } from "../runtime/volume-mounts.js";
import type { SandboxFilter, Store } from "../store/store.js";
import type { AgentPool } from "./agent-pool.js";
import type { SandboxDeaths } from "./sandbox-deaths.js";
import type { SandboxOrigin, SandboxOrigins } from "./sandbox-origin.js";
import { toSandboxVolume, type VolumeService } from "./volume-service.js";

/** Starts a new sandbox's main process and returns its command id (the exec service does it). */
export type MainProcessStarter = (record: SandboxRecord, agent: AgentClient, argv: string[]) => Promise<string>;

/** Limits a create is held to beyond the organisation's quota (a dialect's own, checked atomically with it). */
/** What a dialect adds to a create: its own limits, and how its clients use the sandbox. */
export interface CreateLimits {
  maxSandboxes?: number;
  /** The client starts the sandbox's display itself (`@e2b/desktop`): see SandboxDesktop.startedByClient. */
  desktopStartedByClient?: boolean;
}

/** Statuses in which the sandbox holds host resources (processes, mounts, a network slot). */
export const LIVE: SandboxStatus[] = ["creating", "running", "pausing", "paused", "resuming"];
const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

/** Persistent sandboxes pause after this long without activity; ephemeral ones have no idle timeout. */
export function idleTimeoutFor(params: Pick<CreateSandboxParams, "lifecycle" | "idleTimeoutMs">): number | null {
  return params.lifecycle === "persistent" ? (params.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS) : null;
}
/** How long a call waits for an automatic resume before it answers 503 with Retry-After. */
const AUTO_RESUME_WAIT_MS = 10_000;

/** The reason a paused sandbox shows when it was hibernated for being idle (see `hibernate`). */
export const HIBERNATED = "hibernated";

/** Paused (or pausing, resuming) for being idle, not because anyone asked. */
export function isHibernated(record: Pick<SandboxRecord, "reason" | "status">): boolean {
  return record.reason === HIBERNATED && ["pausing", "paused", "resuming"].includes(record.status);
}

/** When a running sandbox expires: ephemeral ones after their timeout, persistent ones never. */
export function expiryFrom(record: Pick<SandboxRecord, "lifecycle" | "timeoutMs">, from: number): number | null {
  return record.lifecycle === "persistent" ? null : from + record.timeoutMs;
}

/**
 * A policy sent back as it was shown (injected values `[redacted]`) keeps the stored secret of the same
 * domain and header; anything else is the new value.
 */
function keepRedactedSecrets(submitted: NetworkPolicy, current: NetworkPolicy): NetworkPolicy {
  if (!submitted.transforms?.length) return submitted;
  return {
    ...submitted,
    transforms: submitted.transforms.map((t) => {
      const before = current.transforms?.find((c) => c.domain === t.domain);
      const injectHeaders = Object.fromEntries(
        Object.entries(t.injectHeaders).map(([k, v]) => [k, v === REDACTED ? (before?.injectHeaders[k] ?? "") : v]),
      );
      return { ...t, injectHeaders };
    }),
  };
}

/** The runtime's view of whose egress a policy governs. */
export function egressTarget(r: SandboxRecord) {
  return { netIndex: r.netIndex!, sandboxId: r.id, orgId: r.orgId };
}

export function toSandbox(r: SandboxRecord): Sandbox {
  return {
    id: r.id,
    status: r.status,
    reason: r.reason,
    node: r.nodeId,
    template: r.template,
    user: r.user,
    mainCommandId: r.mainCommandId,
    resources: { vcpus: r.vcpus, memoryMb: r.memoryMb, diskMb: r.diskMb },
    envKeys: Object.keys(r.env).sort(),
    metadata: r.metadata,
    cwd: r.cwd,
    networkPolicy: redactPolicy(r.networkPolicy),
    timeoutAction: r.timeoutAction,
    lifecycle: r.lifecycle,
    idleTimeoutMs: r.idleTimeoutMs,
    autoResume: r.autoResume,
    hibernate: r.hibernate,
    ports: r.ports,
    allPorts: r.allPorts,
    publicPorts: r.publicPorts,
    trafficToken: r.trafficToken,
    volumes: r.volumes.map(toSandboxVolume),
    desktop: r.desktop && { width: r.desktop.width, height: r.desktop.height, dpi: r.desktop.dpi },
    createdAt: iso(r.createdAt)!,
    startedAt: iso(r.startedAt),
    expiresAt: iso(r.expiresAt),
    destroyedAt: iso(r.destroyedAt),
  };
}

/** The in-sandbox services clients reach with a sandbox-scoped token. */
export type SandboxClientService = "e2b-envd" | "opensandbox-execd" | "opensandbox-egress";

/** What SandboxService works with. */
export interface SandboxServiceDeps {
  store: Store;
  runtime: SandboxRuntime;
  origins: SandboxOrigins;
  volumes: VolumeService;
  agents: AgentPool;
  deaths: SandboxDeaths;
  log: FastifyBaseLogger;
  /**
   * Late-bound: the exec service starts main processes and itself needs this service, so composition
   * passes a function that reaches it once both exist.
   */
  startMainProcess: MainProcessStarter;
  /**
   * Late-bound, like the starter: the cluster's moves (SandboxMoves) decide whether a paused sandbox
   * resumes on another node — it lives on a node that is gone or draining — and do it there; undefined
   * means it resumes here.
   */
  resumeElsewhere?: (record: SandboxRecord) => Promise<SandboxRecord | undefined>;
}

/**
 * Sandbox lifecycle: create, look up (scoped to the caller's organisation), pause, resume and destroy.
 * Expiries, idle timeouts, death checks and reconciling at start are the SandboxSupervisor's.
 */
export class SandboxService {
  private readonly store: Store;
  private readonly runtime: SandboxRuntime;
  private readonly origins: SandboxOrigins;
  private readonly volumes: VolumeService;
  private readonly agents: AgentPool;
  private readonly deaths: SandboxDeaths;
  private readonly log: FastifyBaseLogger;
  private readonly startMainProcess: MainProcessStarter;
  private readonly resumeElsewhere: SandboxServiceDeps["resumeElsewhere"];
  private readonly destroying = new Map<string, Promise<void>>();
  private readonly creating = new Set<string>();
  private readonly resuming = new Map<string, Promise<SandboxRecord>>();
  private readonly metadataWrites = new Map<string, Promise<SandboxRecord>>();
  private readonly pausing = new Map<string, Promise<SandboxRecord>>();
  /** Moves between nodes under way on this node (out of it, or into it): calls wait for them. */
  private readonly moving = new Map<string, Promise<unknown>>();
  /** Last API activity (exec, files, port traffic) per running sandbox, for idle timeouts. */
  private readonly lastActivity = new Map<string, number>();

  constructor(
    deps: SandboxServiceDeps,
    private readonly limits: {
      maxPorts: number;
      defaultQuota: OrgQuota;
      snapshotDir: (id: string) => string;
      /** What this node may promise beyond its capacity (checked when a sandbox is inserted on it). */
      overcommit: Overcommit;
    },
    /** Key of the sandboxes' client tokens: a server secret that never enters a sandbox. */
    private readonly clientTokenKey: Buffer,
  ) {
    this.store = deps.store;
    this.runtime = deps.runtime;
    this.origins = deps.origins;
    this.volumes = deps.volumes;
    this.agents = deps.agents;
    this.deaths = deps.deaths;
    this.log = deps.log;
    this.startMainProcess = deps.startMainProcess;
    this.resumeElsewhere = deps.resumeElsewhere;
  }

  private async readySnapshot(org: OrgRecord, id: string) {
    const snapshot = await this.store.getSnapshot(id);
    if (!snapshot || snapshot.orgId !== org.id) throw new ApiError("not_found", `snapshot ${id} not found`);
    if (snapshot.status !== "ready") {
      throw new ApiError("invalid_state", `snapshot ${id} is ${snapshot.status}`, { status: snapshot.status });
    }
    return snapshot;
  }

  /**
   * Runs `copy` on a quiet copy of the sandbox: a running sandbox is paused for it and resumed after
   * (its processes continue; open TCP connections are cut), a paused one is copied as it is.
   */
  async withPausedSandbox<T>(org: OrgRecord, id: string, copy: (record: SandboxRecord) => Promise<T>): Promise<T> {
    const record = await this.get(org, id);
    assertStatus(record, ["running", "paused"], "snapshot");
    const wasRunning = record.status === "running";
    if (wasRunning) await this.pauseById(id, "snapshot");
    try {
      return await copy(record);
    } finally {
      if (wasRunning) await this.resumeById(id);
    }
  }

  /** The organisation's quota, falling back field by field to the server's defaults. */
  async effectiveQuota(orgId: string): Promise<OrgQuota> {
    const own = await this.store.getOrgQuota(orgId);
    const d = this.limits.defaultQuota;
    return {
      maxSandboxes: own.maxSandboxes ?? d.maxSandboxes,
      maxVcpus: own.maxVcpus ?? d.maxVcpus,
      maxMemoryMb: own.maxMemoryMb ?? d.maxMemoryMb,
    };
  }

  /**
   * The quota a create is held to: the organisation's, with `maxSandboxes` (a dialect's own
   * per-organisation limit) tightening its sandbox count.
   */
  async quotaFor(orgId: string, options: CreateLimits = {}): Promise<OrgQuota> {
    const quota = await this.effectiveQuota(orgId);
    if (options.maxSandboxes !== undefined) {
      quota.maxSandboxes = Math.min(quota.maxSandboxes ?? options.maxSandboxes, options.maxSandboxes);
    }
    return quota;
  }

  /**
   * Creates and starts a sandbox (callers outside the services create through WarmPoolService.createSandbox,
   * which takes a pooled one when it can). `maxSandboxes` tightens the organisation's sandbox quota for this
   * create (a dialect's own per-organisation limit); it is checked atomically with the quota.
   */
  async create(org: OrgRecord, params: CreateSandboxParams, options: CreateLimits = {}): Promise<SandboxRecord> {
    const networkPolicy = resolvePolicy(params);
    if (params.ports.length > this.limits.maxPorts) {
      throw new ApiError("validation_failed", `Invalid request: ports: at most ${this.limits.maxPorts} ports`, {
        fields: [{ field: "ports", rule: "too_big", message: `at most ${this.limits.maxPorts} ports` }],
      });
    }
    if (params.idleTimeoutMs !== undefined && params.lifecycle !== "persistent") {
      throw new ApiError("validation_failed", "Invalid request: idleTimeoutMs: only for lifecycle persistent", {
        fields: [{ field: "idleTimeoutMs", rule: "conflict", message: "only for lifecycle: persistent" }],
      });
    }
    // From a snapshot: sizing, template, environment, filesystem and egress policy come from it.
    const snapshotId = this.origins.snapshotIdOf(params);
    const snapshot = snapshotId ? await this.readySnapshot(org, snapshotId) : undefined;
    const origin = snapshot
      ? undefined
      : await phase("origin", () => this.origins.resolve(org, params, params.resources.diskMb));
    try {
      const quota = await this.quotaFor(org.id, options);
      // Known as in flight from before its record exists until it ends: a `creating` record of this node
      // that is not in flight was left behind (see `isCreating`).
      const id = newSandboxId();
      this.creating.add(id);
      try {
        return await this.createFrom(id, org, params, networkPolicy, snapshot, origin, quota, options);
      } finally {
        this.creating.delete(id);
      }
    } finally {
      await origin?.release();
    }
  }

  private async createFrom(
    id: string,
    org: OrgRecord,
    params: CreateSandboxParams,
    networkPolicy: NetworkPolicy,
    snapshot: SnapshotRecord | undefined,
    origin: SandboxOrigin | undefined,
    quota: OrgQuota,
    options: CreateLimits,
  ): Promise<SandboxRecord> {
    // A child of a snapshot mounts what the snapshot's sandbox mounted: its restored processes may hold
    // files there open.
    if (snapshot && params.desktop) {
      const message = "a sandbox from a snapshot continues the snapshot's desktop";
      throw new ApiError("validation_failed", `Invalid request: desktop: ${message}`, {
        fields: [{ field: "desktop", rule: "conflict", message }],
      });
    }
    if (snapshot && params.volumes.length > 0) {
      const message = "a sandbox from a snapshot mounts the snapshot's volumes";
      throw new ApiError("validation_failed", `Invalid request: volumes: ${message}`, {
        fields: [{ field: "volumes", rule: "conflict", message }],
      });
    }
    const volumes = snapshot ? (snapshot.volumes ?? []) : await this.volumes.resolve(org, params.volumes);
    const mounts = await this.volumes.launchSpecs(volumes);
    const createdAt = now();
    let record = await phase("db", () =>
      this.store.insertSandbox(
        {
          id,
          orgId: org.id,
          status: "creating",
          reason: null,
          template: snapshot?.template ?? origin!.template,
          vcpus: snapshot?.vcpus ?? params.resources.vcpus,
          memoryMb: snapshot?.memoryMb ?? params.resources.memoryMb,
          diskMb: snapshot?.diskMb ?? params.resources.diskMb,
          env: snapshot ? { ...snapshot.env, ...params.env } : origin!.env,
          metadata: params.metadata,
          // A child of a snapshot keeps its working directory unless the request names another.
          cwd: snapshot ? (params.cwd ?? snapshot.cwd) : origin!.cwd,
          user: snapshot ? (params.user ?? snapshot.user ?? null) : origin!.user,
          mainCommandId: null,
          volumes,
          desktop: desktopOf(snapshot ? (snapshot.desktop ?? null) : origin!.desktop, options),
          timeoutMs: params.timeoutMs,
          networkPolicy:
            snapshot && !params.networkPolicy && params.internetAccess === undefined
              ? snapshot.networkPolicy
              : networkPolicy,
          timeoutAction: params.timeoutAction,
          lifecycle: params.lifecycle,
          idleTimeoutMs: idleTimeoutFor(params),
          autoResume: params.autoResume,
          hibernate: params.hibernate,
          ports: params.ports,
          allPorts: params.allPorts,
          publicPorts: params.publicPorts,
          trafficToken: newToken(),
          agentToken: snapshot?.agentToken ?? newToken(),
          createdAt,
          startedAt: null,
          expiresAt: null,
          destroyedAt: null,
        },
        MAX_SLOTS - 1,
        quota,
        this.limits.overcommit,
      ),
    ).catch((e) => {
      if (e instanceof NoCapacityError) {
        throw noCapacity(`no room for this sandbox: ${e.message}`, {
          nodes: [{ node: e.nodeId, reason: describeShortfall(e.shortfall) }],
        });
      }
      if (e instanceof VolumeMissingError) {
        throw this.volumes.missing(volumes.find((v) => v.volumeId === e.volumeId) ?? { mountPath: "?" });
      }
      if (!(e instanceof QuotaExceededError)) throw e;
      const names = { maxSandboxes: "sandboxes", maxVcpus: "vcpus", maxMemoryMb: "memory (MB)" } as const;
      throw new ApiError(
        "quota_exceeded",
        `quota exceeded: at most ${e.max} ${names[e.limit]} for this organisation, ${e.current} in use`,
        { limit: e.limit, max: e.max, current: e.current },
      );
    });
    const log = this.log.child({ sandboxId: record.id });
    try {
      const launch = {
        id: record.id,
        vcpus: record.vcpus,
        memoryMb: record.memoryMb,
        diskMb: record.diskMb,
        netIndex: record.netIndex!,
        agentToken: record.agentToken,
        mounts,
        egress: { target: egressTarget(record), policy: record.networkPolicy },
      };
      const endpoint = snapshot
        ? await this.runtime.startFromSnapshot(launch, this.limits.snapshotDir(snapshot.id))
        : await this.runtime.start({
            ...launch,
            layers: origin!.rootfs.layers,
            seeds: origin!.seeds,
            files: origin!.files,
          });
      const agent = this.agents.connect(record.id, endpoint);
      // The start applied the egress policy; the working directory too exists before anything of the user's runs.
      await phase("cwd", () => agent.mkdir(record.cwd, { parents: true }));
      if (origin?.entrypoint.length) {
        const mainCommandId = await this.startMainProcess(record, agent, origin.entrypoint);
        record = (await this.store.updateSandbox(record.id, { mainCommandId })) ?? record;
      }
    } catch (e) {
      log.error({ err: e }, "sandbox failed to start");
      await this.runtime.destroy(record.id, record.netIndex).catch(() => undefined);
      this.agents.forget(record.id);
      await this.store.updateSandbox(record.id, { status: "error", reason: "start_failed", netIndex: null });
      if (e instanceof SeedTooLargeError) {
        throw new ApiError("source_failed", `${params.source?.type ?? "source"} source: ${e.message}`, {
          field: "source",
        });
      }
      if (e instanceof VolumeMountError) {
        const mount = volumes[e.index];
        const field = `volumes.${e.index}.${mount?.hostPath !== undefined ? "hostPath" : "subPath"}`;
        throw new ApiError("validation_failed", `Invalid request: ${field}: ${e.message}`, {
          fields: [{ field, rule: "not_a_directory", message: e.message }],
        });
      }
      if (e instanceof ApiError) throw e;
      throw new ApiError("internal", `sandbox failed to start: ${e instanceof Error ? e.message : String(e)}`);
    }
    const startedAt = now();
    const updated = await phase("db", () =>
      this.store.updateSandbox(record.id, { status: "running", startedAt, expiresAt: expiryFrom(record, startedAt) }, [
        "creating",
      ]),
    );
    if (!updated) {
      // Destroyed while it was starting: the destroy already cleaned up.
      record = (await this.store.getSandbox(record.id))!;
      return record;
    }
    log.info({ template: record.template, ms: startedAt - createdAt, phases: currentPhases() }, "sandbox created");
    return updated;
  }

  /**
   * Checks a create's volumes exist and may be mounted, before placement: a volume that does not exist is a
   * 404 whether or not a node has room.
   */
  async checkVolumes(org: OrgRecord, params: CreateSandboxParams): Promise<void> {
    if (params.volumes.length > 0 && !this.snapshotIdOf(params)) await this.volumes.resolve(org, params.volumes);
  }

  /** The snapshot a create starts from (`snapshotId` or a snapshot source), if any. */
  snapshotIdOf(params: CreateSandboxParams): string | undefined {
    return this.origins.snapshotIdOf(params);
  }

  /** The caller's sandbox, or 404 — also when it belongs to another organisation. */
  async get(org: OrgRecord, id: string): Promise<SandboxRecord> {
    const record = await this.store.getSandbox(id);
    if (!record || record.orgId !== org.id) throw notFound("sandbox", id);
    return record;
  }

  /**
   * A sandbox by id alone, for callers that authenticated against the sandbox itself (an envd access
   * token) rather than an organisation's key. Check the caller's right to it before using it.
   */
  getUnscoped(id: string): Promise<SandboxRecord | undefined> {
    return this.store.getSandbox(id);
  }

  /**
   * The token a client holds to reach one service inside one sandbox (E2B's envd, OpenSandbox's execd and
   * egress): keyed by the server's secret and the sandbox id, so it opens no other sandbox (forks and
   * snapshot children included) and nothing inside a sandbox lets anyone compute it.
   */
  clientToken(sandboxId: string, service: SandboxClientService): string {
    return keyedToken(this.clientTokenKey, `sandbox-client:${service}:${sandboxId}`);
  }

  /**
   * The sandbox a client token opens, with its organisation (services scope by organisation; the token
   * proved which one this is); undefined for a wrong token and an unknown sandbox alike.
   */
  async byClientToken(
    sandboxId: string,
    service: SandboxClientService,
    token: string | undefined,
  ): Promise<{ org: OrgRecord; record: SandboxRecord } | undefined> {
    if (!token || !tokensEqual(token, this.clientToken(sandboxId, service))) return undefined;
    const record = await this.store.getSandbox(sandboxId);
    if (!record) return undefined;
    return { org: orgOf(record), record };
  }

  /**
   * The sandbox its traffic token opens, with its organisation: the sandbox's own token, or none at all
   * for a sandbox whose ports are public; undefined for a wrong token and an unknown sandbox alike.
   */
  async byTrafficToken(
    sandboxId: string,
    token: string | undefined,
  ): Promise<{ org: OrgRecord; record: SandboxRecord } | undefined> {
    const record = await this.store.getSandbox(sandboxId);
    if (!record) return undefined;
    const allowed = token === undefined ? record.publicPorts : tokensEqual(token, record.trafficToken);
    return allowed ? { org: orgOf(record), record } : undefined;
  }

  list(org: OrgRecord, filter: SandboxFilter): Promise<SandboxRecord[]> {
    return this.store.listSandboxes(org.id, filter);
  }

  async setTimeout(org: OrgRecord, id: string, timeoutMs: number): Promise<SandboxRecord> {
    const record = await this.get(org, id);
    assertStatus(record, ["running", "paused"], "change the timeout of");
    const expiresAt =
      record.status === "paused" && !isHibernated(record) ? null : expiryFrom({ ...record, timeoutMs }, now());
    const updated = await this.store.updateSandbox(id, { timeoutMs, expiresAt }, ["running", "paused"]);
    if (!updated) return this.setTimeout(org, id, timeoutMs);
    return updated;
  }

  /**
   * Merges a patch into the sandbox's metadata (a string sets the key, null removes it). Metadata is
   * bookkeeping, so it changes in every status but destroying and destroyed, also in `error`.
   */
  updateMetadata(org: OrgRecord, id: string, patch: MetadataPatch): Promise<SandboxRecord> {
    // Read-merge-write: patches of one sandbox run one after another so none drops another's keys.
    const next = (this.metadataWrites.get(id) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.mergeMetadata(org, id, patch));
    this.metadataWrites.set(id, next);
    const forget = () => {
      if (this.metadataWrites.get(id) === next) this.metadataWrites.delete(id);
    };
    next.then(forget, forget);
    return next;
  }

  private async mergeMetadata(org: OrgRecord, id: string, patch: MetadataPatch): Promise<SandboxRecord> {
    const record = await this.get(org, id);
    const editable: SandboxStatus[] = [...LIVE, "error"];
    assertStatus(record, editable, "change the metadata of");
    const metadata = { ...record.metadata };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete metadata[key];
      else metadata[key] = value;
    }
    if (Object.keys(metadata).length > MAX_METADATA_ENTRIES) {
      const message = `at most ${MAX_METADATA_ENTRIES} entries after the merge`;
      throw new ApiError("validation_failed", `Invalid request: metadata: ${message}`, {
        fields: [{ field: "metadata", rule: "too_big", message }],
      });
    }
    const updated = await this.store.updateSandbox(id, { metadata }, editable);
    // Destroyed meanwhile: the retry answers invalid_state.
    if (!updated) return this.mergeMetadata(org, id, patch);
    return updated;
  }

  /**
   * Checkpoints a running sandbox's memory and processes and stops it (`paused`). It keeps its
   * filesystem, network identity and ports; while paused it does not expire.
   */
  async pause(org: OrgRecord, id: string): Promise<SandboxRecord> {
    const record = await this.get(org, id);
    if (record.status === "paused" && isHibernated(record)) {
      // Asked for: a plain pause from now on, resumed only when asked (or with autoResume), not expiring.
      const updated = await this.store.updateSandbox(id, { reason: null, expiresAt: null }, ["paused"]);
      return updated ?? this.pause(org, id);
    }
    if (record.status === "paused") return record;
    assertStatus(record, ["running"], "pause");
    return this.pauseById(id, "requested");
  }

  /** One pause per sandbox at a time: an auto-resume that arrives meanwhile waits for it. */
  pauseById(id: string, why: string): Promise<SandboxRecord> {
    const inFlight = this.pausing.get(id);
    if (inFlight) return inFlight;
    const run = this.doPause(id, why).finally(() => this.pausing.delete(id));
    this.pausing.set(id, run);
    return run;
  }

  /**
   * Hibernates an idle running sandbox: paused like any pause, but shown as paused with reason
   * `hibernated`, resumed by its next call whatever its autoResume, and still expiring at its time.
   */
  hibernate(id: string): Promise<SandboxRecord> {
    return this.pauseById(id, HIBERNATED);
  }

  private async doPause(id: string, why: string): Promise<SandboxRecord> {
    const hibernating = why === HIBERNATED;
    await this.assertCheckpointable(id);
    const claimed = await this.store.updateSandbox(
      id,
      { status: "pausing", ...(hibernating ? { reason: HIBERNATED } : {}) },
      ["running"],
      why,
    );
    if (!claimed) {
      const current = (await this.store.getSandbox(id))!;
      assertStatus(current, ["paused"], "pause");
      return current;
    }
    this.agents.forget(id);
    try {
      await this.runtime.pause(id);
    } catch (e) {
      this.log.error({ err: e, sandboxId: id }, "pause failed");
      await this.store.updateSandbox(id, { status: "running", reason: null }, ["pausing"]);
      if (await this.runtime.alive(id)) {
        throw new ApiError("internal", `sandbox ${id} could not be paused: ${e instanceof Error ? e.message : e}`);
      }
      throw sandboxFailed(await this.deaths.markDead(id, "pause_failed"), e instanceof Error ? e.message : String(e));
    }
    this.lastActivity.delete(id);
    this.log.info({ sandboxId: id, why }, "sandbox paused");
    // A hibernated sandbox keeps its expiry: hibernation saves the host's CPU, it does not extend a lifetime.
    const paused = hibernating ? { status: "paused" as const } : { status: "paused" as const, expiresAt: null };
    return (await this.store.updateSandbox(id, paused, ["pausing"], why))!;
  }

  /**
   * Refuses (409) a pause that would kill the sandbox: the runsc installed here cannot save a file deleted
   * while a process keeps it open or mapped on the sandbox's disk — its checkpoint fails and the sandbox
   * dies with it. An agent that cannot tell (unreachable, or from before the check) lets the pause go on.
   */
  private async assertCheckpointable(id: string): Promise<void> {
    const record = await this.store.getSandbox(id);
    if (record?.status !== "running") return;
    const blockers = await this.agents
      .for(record)
      .checkpointBlockers()
      .catch(() => []);
    const [first] = blockers;
    if (!first) return;
    const more = blockers.length > 1 ? ` (and ${blockers.length - 1} more)` : "";
    throw new ApiError(
      "invalid_state",
      `cannot pause sandbox ${id}: ${first.command} (pid ${first.pid}) still uses ${first.path}, which was deleted${more}, and gVisor cannot save a deleted file on the sandbox's disk (one in /tmp, in memory, is saved). Close it or end the process, then pause.`,
      { files: blockers },
    );
  }

  /** Brings a paused sandbox back with its processes and memory as they were (idempotent when running). */
  async resume(org: OrgRecord, id: string): Promise<SandboxRecord> {
    const record = await this.get(org, id);
    if (record.status === "running") return record;
    if (record.status !== "resuming") assertStatus(record, ["paused"], "resume");
    return this.resumeById(id);
  }

  /**
   * One resume per sandbox at a time: concurrent callers (and auto-resumes) share it. A sandbox whose
   * node is gone or draining resumes on another node (resumeElsewhere).
   */
  private resumeById(id: string): Promise<SandboxRecord> {
    const inFlight = this.resuming.get(id);
    if (inFlight) return inFlight;
    const run = (async () => {
      // A move under way decides where it runs: the resume follows it.
      await this.moving.get(id)?.catch(() => undefined);
      const record = await this.store.getSandbox(id);
      const moved = record?.status === "paused" ? await this.resumeElsewhere?.(record) : undefined;
      return moved ?? (await this.doResume(id));
    })().finally(() => this.resuming.delete(id));
    this.resuming.set(id, run);
    return run;
  }

  /**
   * Resumes a paused sandbox that another node's move handed to this one (`why`: the resume's reason);
   * its image is on shared storage.
   */
  resumeMovedHere(id: string, why: string): Promise<SandboxRecord> {
    return this.doResume(id, why);
  }

  private async doResume(id: string, why?: string): Promise<SandboxRecord> {
    const record = await this.store.updateSandbox(id, { status: "resuming" }, ["paused"]);
    if (!record) {
      const current = (await this.store.getSandbox(id))!;
      assertStatus(current, ["running"], "resume");
      return current;
    }
    try {
      const endpoint = await this.runtime.resume({
        id,
        netIndex: record.netIndex!,
        agentToken: record.agentToken,
        vcpus: record.vcpus,
        memoryMb: record.memoryMb,
        diskMb: record.diskMb,
        mounts: await this.volumes.launchSpecs(record.volumes),
        egress: { target: egressTarget(record), policy: record.networkPolicy },
      });
      this.agents.connect(id, endpoint);
    } catch (e) {
      this.log.error({ err: e, sandboxId: id }, "resume failed");
      await this.runtime.pause(id).catch(() => undefined);
      await this.store.updateSandbox(id, { status: "paused" }, ["resuming"]);
      throw new ApiError("internal", `sandbox ${id} could not be resumed: ${e instanceof Error ? e.message : e}`);
    }
    this.log.info({ sandboxId: id, why }, "sandbox resumed");
    this.lastActivity.set(id, now());
    // Out of hibernation it runs on to the expiry it had; out of a pause its timeout starts again.
    const expiresAt = isHibernated(record) ? record.expiresAt : expiryFrom(record, now());
    const updated = await this.store.updateSandbox(
      id,
      { status: "running", reason: null, expiresAt },
      ["resuming"],
      why,
    );
    return updated ?? (await this.store.getSandbox(id))!;
  }

  /**
   * Notes a move of the sandbox between nodes under way here (out of or into this node): calls that
   * arrive meanwhile wait for it instead of finding the sandbox half gone.
   */
  trackMove<T>(id: string, move: Promise<T>): Promise<T> {
    this.moving.set(id, move);
    const forget = () => {
      if (this.moving.get(id) === move) this.moving.delete(id);
    };
    move.then(forget, forget);
    return move;
  }

  /** Forgets a sandbox that moved to another node: its host state here goes (the image lives on there). */
  async releaseMovedAway(id: string, netIndex: number | null): Promise<void> {
    this.agents.forget(id);
    this.lastActivity.delete(id);
    await this.runtime.destroy(id, netIndex);
  }

  /**
   * A sandbox that calls may use: running, or — with autoResume — paused and resumed on the way. A
   * resume that takes longer than a bound answers 503 with Retry-After (it goes on in the background).
   */
  private async usable(given: SandboxRecord): Promise<SandboxRecord> {
    let record = given;
    const move = this.moving.get(record.id);
    if (move) {
      await within(
        move.catch(() => undefined),
        AUTO_RESUME_WAIT_MS,
      );
      record = (await this.store.getSandbox(record.id)) ?? record;
      if (record.nodeId !== this.store.nodeId) {
        // Asked of the node it left: the retry reaches the node it lives on now.
        throw new ApiError(
          "runtime_unavailable",
          `sandbox ${record.id} moved to node ${record.nodeId}; retry`,
          { node: record.nodeId },
          { "retry-after": "1" },
        );
      }
    }
    if (record.nodeId !== this.store.nodeId && record.status !== "paused") {
      // Its processes, network slot and ports are on that node: the slot's address here is another
      // sandbox's, so nothing of this host may stand in for it.
      throw new ApiError(
        "runtime_unavailable",
        `sandbox ${record.id} runs on node ${record.nodeId}, which does not answer; retry shortly`,
        { node: record.nodeId },
        { "retry-after": "2" },
      );
    }
    // A hibernated sandbox comes back on any call, as autoResume would bring back a paused one.
    const resumes = (r: SandboxRecord) => r.autoResume || isHibernated(r);
    if (resumes(record) && record.status === "pausing") {
      await this.pausing.get(record.id)?.catch(() => undefined);
      record = (await this.store.getSandbox(record.id)) ?? record;
    }
    if (!resumes(record) || (record.status !== "paused" && record.status !== "resuming")) {
      assertStatus(record, ["running"], "use");
      return record;
    }
    const resumed = this.resumeById(record.id);
    resumed.catch(() => undefined);
    const result = await within(resumed, AUTO_RESUME_WAIT_MS);
    if (!result) {
      throw new ApiError("runtime_unavailable", `sandbox ${record.id} is resuming; retry shortly`, undefined, {
        "retry-after": "2",
      });
    }
    return result;
  }

  /** Notes API activity on a sandbox: persistent sandboxes pause after idleTimeoutMs without any. */
  touch(id: string) {
    this.lastActivity.set(id, now());
  }

  /** The last API activity (or resume) noted for a running sandbox; none before its first. */
  lastActivityOf(id: string): number | undefined {
    return this.lastActivity.get(id);
  }

  /** Makes a sandbox taken from a warm pool fit its new request: policy applied, working directory made. */
  async adopt(record: SandboxRecord, before: Pick<SandboxRecord, "networkPolicy" | "cwd">): Promise<SandboxRecord> {
    // Only what differs from the pooled sandbox costs time: a checkout should take milliseconds.
    if (JSON.stringify(record.networkPolicy) !== JSON.stringify(before.networkPolicy)) {
      await this.runtime.applyNetworkPolicy(egressTarget(record), record.networkPolicy);
    }
    if (record.cwd !== before.cwd) await this.agents.for(record).mkdir(record.cwd, { parents: true });
    this.touch(record.id);
    return record;
  }

  /** Replaces the egress policy of a running sandbox; it applies at once, atomically. */
  async setNetworkPolicy(org: OrgRecord, id: string, submitted: NetworkPolicy): Promise<SandboxRecord> {
    const record = await this.get(org, id);
    assertStatus(record, ["running"], "change the network policy of");
    const policy = keepRedactedSecrets(submitted, record.networkPolicy);
    await this.runtime.applyNetworkPolicy(egressTarget(record), policy);
    return (await this.store.updateSandbox(id, { networkPolicy: policy }))!;
  }

  /** The sandbox behind an exposed port, if that port is exposed (no organisation: port traffic). */
  async withExposedPort(id: string, port: number): Promise<SandboxRecord | undefined> {
    const record = await this.store.getSandbox(id);
    return record && (record.allPorts || record.ports.includes(port)) ? record : undefined;
  }

  /** Where an authorised request to an exposed port goes; resumes the sandbox first with autoResume. */
  async portAddress(record: SandboxRecord, port: number) {
    const running = await this.usable(record);
    this.touch(running.id);
    return this.runtime.portAddress({ netIndex: running.netIndex! }, port);
  }

  async destroy(org: OrgRecord, id: string): Promise<void> {
    await this.get(org, id);
    await this.destroyById(id, null);
  }

  /**
   * Whether a create of the sandbox is under way in this process. A `creating` record of this node that
   * is not was left behind: its create failed and could not even record that (the database was away).
   */
  isCreating(id: string): boolean {
    return this.creating.has(id);
  }

  /** Whether a teardown of the sandbox is under way. */
  isDestroying(id: string): boolean {
    return this.destroying.has(id);
  }

  /** Destroys a sandbox whatever its state; concurrent calls share one teardown. */
  destroyById(id: string, reason: string | null): Promise<void> {
    const inFlight = this.destroying.get(id);
    if (inFlight) return inFlight;
    const run = (async () => {
      const record = await this.store.getSandbox(id);
      if (!record || record.status === "destroyed") return;
      // The reason reaches the lifecycle events: `requested` unless something else destroys it.
      const cause = reason ?? "requested";
      await this.store.updateSandbox(id, { status: "destroying", ...(reason ? { reason } : {}) }, undefined, cause);
      this.agents.forget(id);
      // A sandbox of another node (one that is gone) holds no network slot here: only leftovers go.
      await this.runtime.destroy(id, record.nodeId === this.store.nodeId ? record.netIndex : null);
      await this.runtime.discardImage(id);
      await this.store.markRunningCommandsLost(id);
      await this.store.updateSandbox(id, { status: "destroyed", destroyedAt: now(), netIndex: null }, undefined, cause);
      this.log.info({ sandboxId: id, reason }, "sandbox destroyed");
    })().finally(() => this.destroying.delete(id));
    this.destroying.set(id, run);
    return run;
  }

  /**
   * The agent of a running sandbox of the caller, or a 409 saying which state it is in. A sandbox that
   * died is noticed here too, so calls never hang on a dead sandbox.
   */
  async requireRunning(org: OrgRecord, id: string): Promise<{ record: SandboxRecord; agent: AgentClient }> {
    const record = await this.requireUsable(org, id);
    return { record, agent: this.agents.for(record) };
  }

  /** A running sandbox of the caller (resumed on the way with autoResume), or a 409 saying its state. */
  async requireUsable(org: OrgRecord, id: string): Promise<SandboxRecord> {
    const record = await this.usable(await this.get(org, id));
    this.touch(id);
    return record;
  }

  /** Checks that the agent of the caller's running sandbox answers; a sandbox that died answers 409. */
  async checkAgent(org: OrgRecord, id: string, timeoutMs: number): Promise<void> {
    const { agent } = await this.requireRunning(org, id);
    await agent.health({ timeoutMs }).catch((e: unknown) => this.explainAgentFailure(id, e));
  }

  /**
   * Runs a command through the runtime instead of the agent, for when the sandbox is alive but its
   * agent does not answer.
   */
  async execWithoutAgent(
    org: OrgRecord,
    id: string,
    argv: string[],
    opts: { cwd: string; env: Record<string, string>; timeoutMs?: number; stdin?: string },
  ) {
    const record = await this.get(org, id);
    assertStatus(record, ["running"], "use");
    this.log.warn({ sandboxId: id }, "agent unreachable: running the command with runsc exec");
    return this.runtime.execFallback(id, argv, {
      cwd: opts.cwd,
      env: Object.entries(opts.env).map(([k, v]) => `${k}=${v}`),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
    });
  }

  /**
   * Called when the agent could not be reached: when the sandbox died, records why and answers 409;
   * when it lives, the agent's server was killed or restarted under the call (a process in the sandbox can
   * do that; PID 1 restarts it) and the call answers 502 saying so; other errors are rethrown.
   */
  async explainAgentFailure(id: string, error: unknown): Promise<never> {
    if (!(error instanceof AgentUnreachableError)) throw error;
    if (!(await this.runtime.alive(id))) {
      const record = await this.deaths.markDead(id);
      throw sandboxFailed(record);
    }
    throw new ApiError(
      "upstream_unavailable",
      `the agent of sandbox ${id} went away during the call (a process in the sandbox may have killed it; it restarts by itself): its outcome is unknown, retry`,
      { sandboxId: id, reason: "agent_lost" },
    );
  }

  close() {
    this.agents.close();
  }
}

/** What `promise` gives within `ms`; undefined when it takes longer (it goes on). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref());
  return Promise.race([promise, timeout]);
}

/** `internetAccess: false` is deny-all; it cannot be combined with a different policy. */
export function resolvePolicy(params: CreateSandboxParams): NetworkPolicy {
  if (params.internetAccess === false) {
    if (params.networkPolicy && params.networkPolicy.mode !== "deny-all") {
      throw new ApiError("validation_failed", "Invalid request: internetAccess: false contradicts networkPolicy", {
        fields: [{ field: "internetAccess", rule: "conflict", message: "contradicts networkPolicy.mode" }],
      });
    }
    return { mode: "deny-all" };
  }
  return params.networkPolicy ?? { mode: "allow-all" };
}

/** A sandbox in `error`, with what it died of when the caller saw it happen (`cause`). */
function sandboxFailed(record: SandboxRecord | undefined, cause?: string): ApiError {
  return new ApiError(
    "sandbox_failed",
    `sandbox ${record?.id} is not running: status ${record?.status}${record?.reason ? ` (${record.reason})` : ""}${cause ? `: ${cause}` : ""}`,
    { status: record?.status, reason: record?.reason, ...(cause ? { cause } : {}) },
  );
}

export function assertStatus(record: SandboxRecord, allowed: SandboxStatus[], action: string) {
  if (allowed.includes(record.status)) return;
  if (record.status === "error") throw sandboxFailed(record);
  throw new ApiError("invalid_state", `cannot ${action} sandbox ${record.id} while it is ${record.status}`, {
    status: record.status,
    allowed,
  });
}

/** The organisation a sandbox belongs to, as far as a token that opened the sandbox proves it. */
function orgOf(record: SandboxRecord): OrgRecord {
  return { id: record.orgId, name: "", createdAt: 0 };
}

/** The new sandbox's desktop, marked as started by the client when its dialect says so. */
function desktopOf(desktop: SandboxDesktop | null, options: CreateLimits): SandboxDesktop | null {
  if (!desktop) return null;
  const { startedByClient: _, ...settings } = desktop;
  return options.desktopStartedByClient ? { ...settings, startedByClient: true } : settings;
}
