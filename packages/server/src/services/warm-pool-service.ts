import { performance } from "node:perf_hooks";
import type { CreateSandboxParams } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { PlacementRequest } from "../cluster/placement.js";
import type { PlacedCreate, SandboxPlacer } from "../cluster/sandbox-placer.js";
import type { OrgRecord, SandboxRecord, WarmPoolRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { now } from "../lib/clock.js";
import { newToken } from "../lib/ids.js";
import type { Store } from "../store/store.js";
import {
  type CreateLimits,
  expiryFrom,
  idleTimeoutFor,
  resolvePolicy,
  type SandboxService,
} from "./sandbox-service.js";
import type { ServerMetrics } from "./server-metrics.js";

/** The organisation that holds pooled sandboxes until they are checked out. */
export const POOL_ORG = "_warm-pools";
/** Metadata key naming the pool of a pooled sandbox. */
export const POOL_TAG = "sandpit.pool";
const POOL_CWD = "/workspace";

export interface WarmPoolCheckout {
  hit: boolean;
  poolId: string | null;
}

/**
 * Pooled sandboxes are plain template sandboxes: anything that shapes the filesystem or the main process
 * at create (an image, a source, a snapshot, an entrypoint, a user, volumes) needs a cold start — and so
 * does brokered HTTPS, which needs the caller's organisation CA in the sandbox (pooled ones trust the pool's).
 */
function shapedCreate(params: CreateSandboxParams): boolean {
  return Boolean(
    params.snapshotId ||
      params.image ||
      params.source ||
      params.runtime ||
      params.entrypoint ||
      params.user ||
      params.volumes.length > 0 ||
      (params.networkPolicy?.transforms?.length ?? 0) > 0,
  );
}

/**
 * Warm pools: ready sandboxes per template and size, taken by creates that match and refilled in the
 * background. A checkout moves the sandbox to the caller's organisation and applies the request's env,
 * metadata, timeout, policy and ports before it is returned.
 */
export class WarmPoolService {
  private poolOrg: OrgRecord | undefined;
  private refilling = false;

  constructor(
    private readonly store: Store,
    private readonly sandboxes: SandboxService,
    private readonly placer: SandboxPlacer,
    private readonly log: FastifyBaseLogger,
    private readonly metrics?: ServerMetrics,
    /** Snapshots are on storage every node reaches (SANDPIT_SHARED_DIR): a child may start on any node. */
    private readonly sharedSnapshots = false,
  ) {}

  /** Registers the pools from the configuration (they are kept in the database with admin-made ones). */
  async init(configured: WarmPoolRecord[]): Promise<void> {
    this.poolOrg = await this.store.ensureOrg(POOL_ORG);
    for (const pool of configured) await this.store.putWarmPool(pool);
  }

  /** The pools with how many ready sandboxes each holds now. */
  async list(): Promise<(WarmPoolRecord & { ready: number })[]> {
    const pools = await this.store.listWarmPools();
    return Promise.all(
      pools.map(async (p) => ({
        ...p,
        ready: (await this.pooled(p.id)).filter((s) => s.status === "running").length,
      })),
    );
  }

  async put(pool: WarmPoolRecord): Promise<WarmPoolRecord> {
    await this.store.putWarmPool(pool);
    return pool;
  }

  async delete(id: string): Promise<void> {
    await this.store.deleteWarmPool(id);
    for (const s of await this.pooled(id)) await this.sandboxes.destroyById(s.id, "pool removed");
  }

  private async pooled(poolId: string): Promise<SandboxRecord[]> {
    // Each node keeps its own pools filled: a pooled sandbox is checked out where it runs.
    return this.store.listSandboxes(this.poolOrg!.id, {
      nodeId: this.store.nodeId,
      statuses: ["creating", "running"],
      metadata: { [POOL_TAG]: poolId },
    });
  }

  /**
   * The one way clients' sandboxes are created (native API and every dialect): on the node placement
   * chooses (this one or another, over the internal API), from a warm pool there when one matches (or is
   * named), cold otherwise; held to the organisation's quota tightened by `limits`, and counted in the
   * create metric.
   */
  async createSandbox(
    org: OrgRecord,
    params: CreateSandboxParams,
    limits: CreateLimits = {},
  ): Promise<{ record: SandboxRecord; checkout?: WarmPoolCheckout }> {
    const started = performance.now();
    const { request, warmReady } = await this.placementOf(org, params);
    const created = await this.placer.place(
      request,
      { org, params, limits },
      () => this.placeSandbox(org, params, limits),
      warmReady,
    );
    this.metrics?.observeCreate((performance.now() - started) / 1000, created.checkout?.hit ? "warm_pool" : "cold");
    return created;
  }

  /** A create another node placed on this one (the internal API): made here, under the placing node's offer. */
  createPlaced(create: PlacedCreate): Promise<{ record: SandboxRecord; checkout?: WarmPoolCheckout }> {
    return this.placer.accept(create, () => this.placeSandbox(create.org, create.params, create.limits));
  }

  /**
   * What the create asks of placement: its size (a snapshot's or a pool's when it comes from one), the
   * nodes it may go to (`placement`, or the node that holds what it needs: a snapshot's files, volumes),
   * and where a warm-pool member for it is ready.
   */
  private async placementOf(
    org: OrgRecord,
    params: CreateSandboxParams,
  ): Promise<{ request: PlacementRequest; warmReady?: Map<string, number> }> {
    await this.sandboxes.checkVolumes(org, params);
    const snapshotId = this.sandboxes.snapshotIdOf(params);
    const snapshot = snapshotId ? await this.store.getSnapshot(snapshotId) : undefined;
    const ownSnapshot = snapshot?.orgId === org.id ? snapshot : undefined;
    // Volumes, and snapshots without shared storage, are kept in the data directory of the node that made them.
    const pinned =
      ownSnapshot && !this.sharedSnapshots
        ? { node: ownSnapshot.nodeId ?? this.store.nodeId, why: `snapshot ${ownSnapshot.id} is kept on its node` }
        : params.volumes.length > 0
          ? { node: this.store.nodeId, why: "volumes are mounted from the node the create arrives at" }
          : undefined;
    const asked = params.placement?.node;
    if (pinned && asked !== undefined && asked !== pinned.node) {
      const message = `${pinned.why} (${pinned.node})`;
      throw new ApiError("validation_failed", `Invalid request: placement.node: ${message}`, {
        fields: [{ field: "placement.node", rule: "conflict", message }],
      });
    }
    const size = ownSnapshot ?? params.resources;
    const request: PlacementRequest = {
      vcpus: size.vcpus,
      memoryMb: size.memoryMb,
      diskMb: size.diskMb,
      node: asked ?? pinned?.node,
      labels: params.placement?.labels,
    };
    const pool = shapedCreate(params) ? undefined : await this.poolFor(params);
    if (!pool) return { request };
    const ready = await this.store.listSandboxes(this.poolOrg!.id, {
      statuses: ["running"],
      metadata: { [POOL_TAG]: pool.id },
    });
    const warmReady = new Map<string, number>();
    for (const s of ready) warmReady.set(s.nodeId, (warmReady.get(s.nodeId) ?? 0) + 1);
    return { request: { ...request, vcpus: pool.vcpus, memoryMb: pool.memoryMb, diskMb: pool.diskMb }, warmReady };
  }

  /** The warm pool a create would check out from (named, or matching its template and size). */
  private async poolFor(params: CreateSandboxParams): Promise<WarmPoolRecord | undefined> {
    if (params.warmPool?.mode === "bypass") return undefined;
    const pools = await this.store.listWarmPools();
    return params.warmPool?.poolId
      ? pools.find((p) => p.id === params.warmPool?.poolId)
      : pools.find(
          (p) =>
            p.template === params.template &&
            p.vcpus === params.resources.vcpus &&
            p.memoryMb === params.resources.memoryMb &&
            p.diskMb === params.resources.diskMb,
        );
  }

  private async placeSandbox(
    org: OrgRecord,
    params: CreateSandboxParams,
    limits: CreateLimits,
  ): Promise<{ record: SandboxRecord; checkout?: WarmPoolCheckout }> {
    const mode = params.warmPool?.mode ?? "prefer";
    const shaped = shapedCreate(params);
    if (shaped && mode === "require") {
      throw new ApiError(
        "conflict",
        "warm pools hold plain template sandboxes: image, source, snapshot, runtime, entrypoint, user, " +
          "volumes and transforms need a cold create",
      );
    }
    if (mode === "bypass" || shaped) {
      return { record: await this.sandboxes.create(org, params, limits) };
    }
    const pool = await this.poolFor(params);
    if (params.warmPool?.poolId && !pool)
      throw new ApiError("not_found", `warm pool ${params.warmPool.poolId} not found`);
    if (!pool) {
      if (mode === "require") throw new ApiError("conflict", "no warm pool matches this template and resources");
      return { record: await this.sandboxes.create(org, params, limits) };
    }
    const taken = await this.checkout(org, pool, params, limits);
    if (taken) return { record: taken, checkout: { hit: true, poolId: pool.id } };
    if (mode === "require") throw new ApiError("conflict", `warm pool ${pool.id} has no ready sandbox; retry shortly`);
    const cold = await this.sandboxes.create(
      org,
      {
        ...params,
        template: pool.template,
        resources: { vcpus: pool.vcpus, memoryMb: pool.memoryMb, diskMb: pool.diskMb },
      },
      limits,
    );
    return { record: cold, checkout: { hit: false, poolId: pool.id } };
  }

  private async checkout(org: OrgRecord, pool: WarmPoolRecord, params: CreateSandboxParams, limits: CreateLimits) {
    const networkPolicy = resolvePolicy(params);
    const t = now();
    const record = await this.store.checkoutPooled(
      this.poolOrg!.id,
      pool.id,
      org.id,
      {
        metadata: params.metadata,
        env: params.env,
        cwd: params.cwd ?? POOL_CWD,
        timeoutMs: params.timeoutMs,
        networkPolicy,
        timeoutAction: params.timeoutAction,
        lifecycle: params.lifecycle,
        idleTimeoutMs: idleTimeoutFor(params),
        autoResume: params.autoResume,
        hibernate: params.hibernate,
        ports: params.ports,
        allPorts: params.allPorts,
        publicPorts: params.publicPorts,
        trafficToken: newToken(),
        startedAt: t,
        expiresAt: expiryFrom(params, t),
      },
      await this.sandboxes.quotaFor(org.id, limits),
    );
    if (!record) return undefined;
    this.log.info({ sandboxId: record.id, poolId: pool.id }, "warm pool checkout");
    return this.sandboxes.adopt(record, { networkPolicy: { mode: "allow-all" }, cwd: POOL_CWD });
  }

  /** Brings every pool to its size: starts missing sandboxes one at a time, removes extra ones. */
  async refill(): Promise<void> {
    if (this.refilling || !this.poolOrg) return;
    this.refilling = true;
    try {
      for (const pool of await this.store.listWarmPools()) {
        const current = await this.pooled(pool.id);
        for (const extra of current.slice(pool.size)) await this.sandboxes.destroyById(extra.id, "pool shrunk");
        if (current.length < pool.size) {
          const record = await this.sandboxes.create(this.poolOrg, {
            template: pool.template,
            resources: { vcpus: pool.vcpus, memoryMb: pool.memoryMb, diskMb: pool.diskMb },
            timeoutMs: 24 * 3600 * 1000,
            env: {},
            metadata: { [POOL_TAG]: pool.id },
            cwd: POOL_CWD,
            ports: [],
            publicPorts: false,
            allPorts: false,
            timeoutAction: "destroy",
            lifecycle: "ephemeral",
            autoResume: false,
            // A pooled sandbox is there to be taken at once: it stays running; its user's choice applies at checkout.
            hibernate: false,
            volumes: [],
          });
          // A pooled sandbox waits without expiring; its timeout starts at checkout.
          await this.store.updateSandbox(record.id, { expiresAt: null }, ["running"]);
        }
      }
    } catch (e) {
      // Pool members are held to this node's capacity like any sandbox: a full node fills its pools later.
      if (e instanceof ApiError && e.code === "no_capacity")
        this.log.warn({ err: e }, "warm pool refill waits for room");
      else this.log.error({ err: e }, "warm pool refill failed");
    } finally {
      this.refilling = false;
    }
  }
}
