import type { FastifyBaseLogger } from "fastify";
import type { Store } from "../store/store.js";

/** One piece of cluster-wide background work, run every `everyTicks` ticks by the node that leads. */
export interface ClusterJob {
  name: string;
  everyTicks: number;
  /**
   * Run only once the node led without a break for a whole node lease (and the grace): every live node
   * has renewed its lease since, also after a database outage or a change of leader.
   */
  needsSettledLease?: boolean;
  run(): Promise<void>;
}

/** Counts runs of the cluster's jobs (ServerMetrics does, for /metrics). */
export interface ClusterJobMetrics {
  countClusterJob(job: string): void;
  setLeading(leading: boolean): void;
}

/** What the jobs need to know of this node's membership: a node leads only while it is a member. */
export interface Membership {
  readonly node: unknown;
  readonly fenced: boolean;
}

/** Name of the cluster lease that decides which node runs the cluster-wide jobs. */
const JOBS_LEASE = "cluster-jobs";

/**
 * Cluster-wide background work (lost-node detection, purges) runs on one node at a time: the holder of a
 * lease in the database (`holdClusterLease`, taken with a conditional write by the database's clock; with
 * SQLite the only node always holds it). The lease is renewed on a timer of its own, every third of its
 * time to live, so that slow jobs never let it run out; a node that stops renewing loses it after
 * `leaseTtlMs` and another one takes over.
 */
export class ClusterJobs {
  /** When this node began leading without a break (performance.now()); undefined while it does not lead. */
  private leadingSince: number | undefined;
  /** The last renewal that kept the lease (performance.now()). */
  private renewedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;

  constructor(
    private readonly store: Store,
    private readonly membership: Membership,
    private readonly opts: { leaseTtlMs: number; lostGraceMs: number },
    private readonly jobs: ClusterJob[],
    private readonly metrics: ClusterJobMetrics,
    private readonly log: FastifyBaseLogger,
  ) {}

  get leading(): boolean {
    return this.leadingSince !== undefined;
  }

  start(): void {
    this.timer = setInterval(() => void this.renew(), Math.max(250, Math.floor(this.opts.leaseTtlMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.setLeading(false);
  }

  /** Takes or keeps the lease; a failure to renew is a break (another node may lead meanwhile). */
  async renew(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      const member = this.membership.node !== undefined && !this.membership.fenced;
      const held = member && (await this.store.holdClusterLease(JOBS_LEASE, this.opts.leaseTtlMs));
      if (held) this.renewedAt = performance.now();
      this.setLeading(held);
    } catch (e) {
      this.setLeading(false);
      this.log.warn({ err: e }, "renewing the lease of the cluster's jobs failed");
    } finally {
      this.renewing = false;
    }
  }

  /** Runs the jobs due at `tick` when this node leads. */
  async tick(tick: number): Promise<void> {
    // A process that was stalled (stopped, starved) longer than the lease may have been replaced
    // meanwhile: it waits for its next renewal to know.
    if (this.leadingSince === undefined || performance.now() - this.renewedAt >= this.opts.leaseTtlMs) return;
    const settled = performance.now() - this.leadingSince >= this.opts.leaseTtlMs + this.opts.lostGraceMs;
    const due = this.jobs.filter((j) => tick % j.everyTicks === 0 && (settled || !j.needsSettledLease));
    await Promise.all(
      due.map(async (job) => {
        this.metrics.countClusterJob(job.name);
        await job.run().catch((e) => this.log.error({ err: e, job: job.name }, "cluster job failed"));
      }),
    );
  }

  private setLeading(held: boolean) {
    if (held === this.leading) return;
    this.leadingSince = held ? performance.now() : undefined;
    this.metrics.setLeading(held);
    this.log.info(held ? "leading the cluster's background jobs" : "no longer leading the cluster's background jobs");
  }
}
