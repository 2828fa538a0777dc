import { performance } from "node:perf_hooks";
import type { CreateSandboxParams } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
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
    private readonly log: FastifyBaseLogger,
    private readonly metrics?: ServerMetrics,
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
   * The one way clients' sandboxes are created (native API and every dialect): from a warm pool when one
   * matches (or is named), cold otherwise; held to the organisation's quota tightened by `limits`, and
   * counted in the create metric.
   */
  async createSandbox(
    org: OrgRecord,
    params: CreateSandboxParams,
    limits: CreateLimits = {},
  ): Promise<{ record: SandboxRecord; checkout?: WarmPoolCheckout }> {
    const started = performance.now();
    const created = await this.placeSandbox(org, params, limits);
    this.metrics?.observeCreate((performance.now() - started) / 1000, created.checkout?.hit ? "warm_pool" : "cold");
    return created;
  }

  private async placeSandbox(
    org: OrgRecord,
    params: CreateSandboxParams,
    limits: CreateLimits,
  ): Promise<{ record: SandboxRecord; checkout?: WarmPoolCheckout }> {
    const mode = params.warmPool?.mode ?? "prefer";
    // Pooled sandboxes are plain template sandboxes: anything that shapes the filesystem or the main
    // process at create (an image, a source, a snapshot, an entrypoint, a user) needs a cold start.
    const shaped =
      params.snapshotId ||
      params.image ||
      params.source ||
      params.runtime ||
      params.entrypoint ||
      params.user ||
      params.volumes.length > 0 ||
      // Brokered HTTPS needs the caller's organisation CA in the sandbox; pooled ones trust the pool's.
      (params.networkPolicy?.transforms?.length ?? 0) > 0;
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
    const pools = await this.store.listWarmPools();
    const pool = params.warmPool?.poolId
      ? pools.find((p) => p.id === params.warmPool?.poolId)
      : pools.find(
          (p) =>
            p.template === params.template &&
            p.vcpus === params.resources.vcpus &&
            p.memoryMb === params.resources.memoryMb &&
            p.diskMb === params.resources.diskMb,
        );
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
            volumes: [],
          });
          // A pooled sandbox waits without expiring; its timeout starts at checkout.
          await this.store.updateSandbox(record.id, { expiresAt: null }, ["running"]);
        }
      }
    } catch (e) {
      this.log.error({ err: e }, "warm pool refill failed");
    } finally {
      this.refilling = false;
    }
  }
}
