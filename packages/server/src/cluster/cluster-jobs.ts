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

/** Name of the cluster lease that decides which node runs the cluster-wide jobs. */
const JOBS_LEASE = "cluster-jobs";

/**
 * Cluster-wide background work (lost-node detection, purges) runs on one node at a time: the holder of a
 * lease in the database (`holdClusterLease`, taken with a conditional write by the database's clock; with
 * SQLite the only node always holds it). Each tick renews it; a node that stops renewing loses it after
 * `leaseTtlMs` and another one takes over.
 */
export class ClusterJobs {
  /** When this node began leading without a break (performance.now()); undefined while it does not lead. */
  private leadingSince: number | undefined;

  constructor(
    private readonly store: Store,
    private readonly opts: { nodeId: string; leaseTtlMs: number; lostGraceMs: number },
    private readonly jobs: ClusterJob[],
    private readonly metrics: ClusterJobMetrics,
    private readonly log: FastifyBaseLogger,
  ) {}

  get leading(): boolean {
    return this.leadingSince !== undefined;
  }

  /** Renews the lease and runs the jobs due at `tick` when this node leads. */
  async tick(tick: number): Promise<void> {
    let held = false;
    try {
      held = await this.store.holdClusterLease(JOBS_LEASE, this.opts.leaseTtlMs);
    } finally {
      // A failed renewal is a break too: after it, another node may have led (and may lead still).
      this.setLeading(held);
    }
    if (!held) return;
    const settled = performance.now() - this.leadingSince! >= this.opts.leaseTtlMs + this.opts.lostGraceMs;
    const due = this.jobs.filter((j) => tick % j.everyTicks === 0 && (settled || !j.needsSettledLease));
    await Promise.all(
      due.map(async (job) => {
        this.metrics.countClusterJob(job.name);
        await job
          .run()
          .catch((e) => this.log.error({ err: e, node: this.opts.nodeId, job: job.name }, "cluster job failed"));
      }),
    );
  }

  private setLeading(held: boolean) {
    if (held === this.leading) return;
    this.leadingSince = held ? performance.now() : undefined;
    this.metrics.setLeading(held);
    this.log.info(
      { node: this.opts.nodeId },
      held ? "leading the cluster's background jobs" : "no longer leading the cluster's background jobs",
    );
  }
}
