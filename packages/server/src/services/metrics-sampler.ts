import { performance } from "node:perf_hooks";
import type { MetricsSample, SandboxMetrics } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import { AgentClient, AgentError } from "../agent/agent-client.js";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime, SandboxStats } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";

/** How far back a sandbox's samples go. */
export const METRICS_HISTORY_MS = 10 * 60 * 1000;
/** Where the sampler reads time: a monotonic clock for rates, the wall clock for the samples' `at`. */
export interface SamplerClock {
  monotonicMs(): number;
  wallMs(): number;
}
const systemClock: SamplerClock = { monotonicMs: () => performance.now(), wallMs: () => Date.now() };

/**
 * A sandbox busier than this (percent of its vCPUs) is working, not idle: well above gVisor's own idle
 * cost (systrap spins ~4 % of a core per sandbox), well below any loop that does something.
 */
const WORKING_CPU_PERCENT = 10;
/** Network bytes (in + out) a sandbox may move in a window and still count as idle (keep-alives, DNS). */
const WORKING_NETWORK_BYTES = 256 * 1024;

/** Paused sandboxes keep their history; the counters restart when they resume. */
const KEEP_HISTORY: SandboxRecord["status"][] = ["pausing", "paused", "resuming"];

/** A sample as kept: what the API shows, plus when (for windows) and the guest's runnable threads. */
type KeptSample = MetricsSample & {
  atMs: number;
  /** Threads of the guest's processes running or ready to run; null when its agent cannot tell. */
  running: number | null;
  /** Whether its agent answered within the interval: one too starved to answer is not idle. */
  agentAnswered: boolean;
};

interface TrackedSandbox {
  samples: KeptSample[];
  /** The previous reading, for rates; none right after the sandbox started or resumed. */
  previous: { stats: SandboxStats; monotonicMs: number } | undefined;
  /** The sampler's own connection to the agent: sampling must not count as API activity. */
  agent: AgentClient | undefined;
}

/**
 * Samples the resource use of every running sandbox at a fixed interval and keeps the last
 * 10 minutes per sandbox. CPU comes from the host cgroup as a rate between two samples; memory, disk and
 * network from the runtime's counters; the process count from the sandbox's agent (`/proc` inside it).
 * Paused and destroyed sandboxes are not sampled: a paused one keeps its history, a destroyed one
 * loses it.
 */
export class MetricsSampler {
  private readonly tracked = new Map<string, TrackedSandbox>();
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime,
    private readonly log: FastifyBaseLogger,
    readonly intervalMs: number,
    private readonly clock: SamplerClock = systemClock,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sampleAll(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.tracked.values()) t.agent?.close();
    this.tracked.clear();
  }

  /** A sandbox's samples, oldest first, optionally only those taken after `sinceMs`. */
  metricsOf(sandboxId: string, sinceMs?: number): SandboxMetrics {
    const samples = this.tracked.get(sandboxId)?.samples ?? [];
    return {
      sandboxId,
      intervalMs: this.intervalMs,
      samples: samples
        .filter((s) => sinceMs === undefined || s.atMs > sinceMs)
        .map(({ atMs: _, running: __, agentAnswered: ___, ...s }) => s),
    };
  }

  /**
   * Whether a sandbox did work of its own after `sinceMs` as its samples show: it used CPU, had a thread
   * ready to run or an agent too starved to answer (a host too busy to give a working sandbox CPU would
   * otherwise make it look idle), or moved network traffic beyond an idle sandbox's. Without samples in
   * that window (a sampler that fell behind on a loaded host) it is not known to be idle: it counts as
   * working.
   */
  workedSince(sandboxId: string, sinceMs: number): boolean {
    const samples = (this.tracked.get(sandboxId)?.samples ?? []).filter((s) => s.atMs > sinceMs);
    const first = samples[0];
    const last = samples.at(-1);
    if (!first || !last) return true;
    const worked = (s: KeptSample) => s.cpuPercent >= WORKING_CPU_PERCENT || !s.agentAnswered || (s.running ?? 0) > 0;
    if (samples.some(worked)) return true;
    const moved = last.networkRxBytes - first.networkRxBytes + (last.networkTxBytes - first.networkTxBytes);
    return moved > WORKING_NETWORK_BYTES;
  }

  /** One round over every running sandbox; a round still in progress makes the next one skip. */
  async sampleAll(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const running = await this.store.sandboxesInStatus(["running"]);
      const runningIds = new Set(running.map((r) => r.id));
      const pausedIds = new Set((await this.store.sandboxesInStatus(KEEP_HISTORY)).map((r) => r.id));
      for (const [id, t] of this.tracked) {
        if (runningIds.has(id)) continue;
        t.previous = undefined;
        t.agent?.close();
        t.agent = undefined;
        if (!pausedIds.has(id)) this.tracked.delete(id);
      }
      await Promise.all(running.map((r) => this.sample(r)));
    } catch (e) {
      this.log.error({ err: e }, "metrics sampling failed");
    } finally {
      this.sampling = false;
    }
  }

  private async sample(record: SandboxRecord): Promise<void> {
    if (record.netIndex === null) return;
    let t = this.tracked.get(record.id);
    if (!t) {
      t = { samples: [], previous: undefined, agent: undefined };
      this.tracked.set(record.id, t);
    }
    const monotonicMs = this.clock.monotonicMs();
    const at = this.clock.wallMs();
    const [stats, activity] = await Promise.all([
      this.runtime.stats({ id: record.id, netIndex: record.netIndex }),
      this.guestActivity(t, record),
    ]);
    if (!stats) {
      t.previous = undefined;
      return;
    }
    const previous = t.previous;
    t.previous = { stats, monotonicMs };
    // The first reading (or one after the counters restarted) is only the baseline of the next rate.
    // No time between two readings gives no rate either.
    if (!previous || stats.cpuUsageNs < previous.stats.cpuUsageNs || monotonicMs <= previous.monotonicMs) return;
    const elapsedNs = (monotonicMs - previous.monotonicMs) * 1e6;
    const busy = (stats.cpuUsageNs - previous.stats.cpuUsageNs) / (elapsedNs * record.vcpus);
    t.samples.push({
      atMs: at,
      at: new Date(at).toISOString(),
      cpuPercent: Math.round(Math.min(100, Math.max(0, busy * 100)) * 10) / 10,
      memoryBytes: stats.memoryBytes,
      memoryLimitBytes: stats.memoryLimitBytes,
      diskBytes: stats.diskBytes,
      diskLimitBytes: stats.diskLimitBytes,
      networkRxBytes: stats.networkRxBytes,
      networkTxBytes: stats.networkTxBytes,
      processes: activity?.processes ?? null,
      running: activity?.running ?? null,
      agentAnswered: activity !== null,
    });
    const oldest = at - METRICS_HISTORY_MS;
    while ((t.samples[0]?.atMs ?? at) < oldest) t.samples.shift();
  }

  /**
   * Processes inside the sandbox and their runnable threads, as its agent sees them in the guest's /proc.
   * (The host's pids cgroup counts gVisor's threads, not the sandbox's processes.) An agent from before
   * `/activity` (a sandbox paused before an upgrade) gives the count of its /proc's process entries only.
   * Null when the agent does not answer within one interval.
   */
  private async guestActivity(
    t: TrackedSandbox,
    record: SandboxRecord,
  ): Promise<{ processes: number; running: number | null } | null> {
    t.agent ??= new AgentClient(
      this.runtime.agentEndpoint({ netIndex: record.netIndex!, agentToken: record.agentToken }),
      { connectTimeoutMs: this.intervalMs },
    );
    const agent = t.agent;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), this.intervalMs);
    });
    const activity = agent
      .activity()
      .catch(async (e: unknown) => {
        if (!(e instanceof AgentError && e.status === 404)) throw e;
        const entries = await agent.list("/proc");
        return { processes: entries.filter((e) => e.type === "dir" && /^\d+$/.test(e.name)).length, running: null };
      })
      .catch(() => null);
    try {
      return await Promise.race([activity, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
