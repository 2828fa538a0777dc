import { type ErrorCode, nodeStates, type SandboxStatus, sandboxStatuses } from "@sandpit/contract";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ClusterJobMetrics } from "../cluster/cluster-jobs.js";
import type { Store } from "../store/store.js";
import type { NodeWithLoad } from "./node-service.js";

/** Sandboxes the gauge reports: all states but destroyed, which only counts what is still retained. */
const GAUGED_STATUSES = sandboxStatuses.filter((s) => s !== "destroyed");

/**
 * The server's Prometheus metrics, in their own registry (several servers may share a process):
 * sandboxes by state, create and exec latency, API errors by code, warm pool sizes, the cluster's nodes
 * (state, capacity, allocated; labelled by node), which node leads the cluster's jobs, and Node.js's
 * process metrics.
 */
export class ServerMetrics implements ClusterJobMetrics {
  readonly registry = new Registry();
  private readonly createSeconds: Histogram<"source">;
  private readonly execSeconds: Histogram;
  private readonly apiErrors: Counter<"code" | "api">;
  private readonly clusterJobRuns: Counter<"job">;
  private readonly leader: Gauge;

  /** The gauges read the store, the warm pools and the nodes when Prometheus scrapes. */
  constructor(
    store: Pick<Store, "sandboxesInStatus">,
    warmPools: () => Promise<{ id: string; size: number; ready: number }[]>,
    nodes: () => Promise<NodeWithLoad[]> = async () => [],
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "sandpit_sandboxes",
      help: "Sandboxes by state (destroyed ones are not counted)",
      labelNames: ["state"],
      registers,
      async collect() {
        const counts = new Map<SandboxStatus, number>(GAUGED_STATUSES.map((s) => [s, 0]));
        // Over every organisation, warm pools' sandboxes included: they hold host resources too.
        for (const s of await store.sandboxesInStatus(GAUGED_STATUSES)) counts.set(s.status, counts.get(s.status)! + 1);
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });
    new Gauge({
      name: "sandpit_warm_pool_ready",
      help: "Ready sandboxes in each warm pool",
      labelNames: ["pool"],
      registers,
      async collect() {
        this.reset();
        for (const pool of await warmPools()) this.set({ pool: pool.id }, pool.ready);
      },
    });
    new Gauge({
      name: "sandpit_warm_pool_size",
      help: "Sandboxes each warm pool is kept filled to",
      labelNames: ["pool"],
      registers,
      async collect() {
        this.reset();
        for (const pool of await warmPools()) this.set({ pool: pool.id }, pool.size);
      },
    });
    // A scrape collects the three node gauges at once: one look at the nodes serves them all.
    let scrape: Promise<NodeWithLoad[]> | undefined;
    const nodesOnce = () => {
      scrape ??= nodes().finally(() => {
        scrape = undefined;
      });
      return scrape;
    };
    new Gauge({
      name: "sandpit_node_state",
      help: "Each node of the cluster's state: 1 for the state it is in (ready, draining, lost), else 0",
      labelNames: ["node", "state"],
      registers,
      async collect() {
        this.reset();
        for (const { node } of await nodesOnce()) {
          for (const state of nodeStates) this.set({ node: node.id, state }, node.state === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: "sandpit_node_capacity",
      help: "What each node offers (resource: vcpus, memory_mb, disk_mb, sandboxes)",
      labelNames: ["node", "resource"],
      registers,
      async collect() {
        this.reset();
        for (const { node } of await nodesOnce()) {
          const c = node.capacity;
          for (const [resource, value] of Object.entries({
            vcpus: c.vcpus,
            memory_mb: c.memoryMb,
            disk_mb: c.diskMb,
            sandboxes: c.sandboxes,
          })) {
            this.set({ node: node.id, resource }, value);
          }
        }
      },
    });
    new Gauge({
      name: "sandpit_node_allocated",
      help:
        "What each node's sandboxes hold (resource: vcpus and memory_mb of those not paused, sandboxes: " +
        "all but destroyed ones and those in error)",
      labelNames: ["node", "resource"],
      registers,
      async collect() {
        this.reset();
        for (const { node, load } of await nodesOnce()) {
          const held = Object.entries(load.sandboxes)
            .filter(([status]) => status !== "error")
            .reduce((sum, [, n]) => sum + n, 0);
          this.set({ node: node.id, resource: "vcpus" }, load.vcpus);
          this.set({ node: node.id, resource: "memory_mb" }, load.memoryMb);
          this.set({ node: node.id, resource: "sandboxes" }, held);
        }
      },
    });
    this.leader = new Gauge({
      name: "sandpit_cluster_leader",
      help: "1 while this node holds the lease of the cluster's background jobs",
      registers,
    });
    this.clusterJobRuns = new Counter({
      name: "sandpit_cluster_job_runs_total",
      help: "Runs of cluster-wide background jobs on this node (only the leading node runs them)",
      labelNames: ["job"],
      registers,
    });
    this.createSeconds = new Histogram({
      name: "sandpit_sandbox_create_duration_seconds",
      help: "Time from a create request to a running sandbox (source: cold start or warm pool checkout)",
      labelNames: ["source"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    });
    this.execSeconds = new Histogram({
      name: "sandpit_exec_duration_seconds",
      help: "Time from an exec request to the command's exit, command run time included",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.apiErrors = new Counter({
      name: "sandpit_api_errors_total",
      help: "Error responses by error code (api: sandpit, or the dialect that answered)",
      labelNames: ["code", "api"],
      registers,
    });
  }

  observeCreate(seconds: number, source: "cold" | "warm_pool"): void {
    this.createSeconds.observe({ source }, seconds);
  }

  observeExec(seconds: number): void {
    this.execSeconds.observe(seconds);
  }

  countError(code: ErrorCode, api = "sandpit"): void {
    this.apiErrors.inc({ code, api });
  }

  countClusterJob(job: string): void {
    this.clusterJobRuns.inc({ job });
  }

  setLeading(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }

  /** The text exposition format. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
