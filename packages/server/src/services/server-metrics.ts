import { type ErrorCode, type SandboxStatus, sandboxStatuses } from "@sandpit/contract";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Store } from "../store/store.js";

/** Sandboxes the gauge reports: all states but destroyed, which only counts what is still retained. */
const GAUGED_STATUSES = sandboxStatuses.filter((s) => s !== "destroyed");

/**
 * The server's Prometheus metrics, in their own registry (several servers may share a process):
 * sandboxes by state, create and exec latency, API errors by code, warm pool sizes, and Node.js's
 * process metrics.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly createSeconds: Histogram<"source">;
  private readonly execSeconds: Histogram;
  private readonly apiErrors: Counter<"code" | "api">;

  /** The gauges read the store and the warm pools when Prometheus scrapes. */
  constructor(
    store: Pick<Store, "sandboxesInStatus">,
    warmPools: () => Promise<{ id: string; size: number; ready: number }[]>,
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

  /** The text exposition format. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
