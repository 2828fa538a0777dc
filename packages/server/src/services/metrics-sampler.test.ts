// The sampler's arithmetic and bookkeeping over a fake store and runtime (the host side is tested in
// tests/observe/metrics.test.ts against real sandboxes). Time is a fake clock moved by the test, so that
// rates are exact whatever the machine's load.
import http from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime, SandboxStats } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import { MetricsSampler } from "./metrics-sampler.js";

const MiB = 1024 * 1024;

function fixture(vcpus: number, agentPort = 1) {
  const record = { id: "sbx_a", status: "running", vcpus, netIndex: 1, agentToken: "t" } as SandboxRecord;
  let stats: SandboxStats | undefined = {
    cpuUsageNs: 0,
    memoryBytes: 100 * MiB,
    memoryLimitBytes: 1024 * MiB,
    diskBytes: 5 * MiB,
    diskLimitBytes: 1000 * MiB,
    networkRxBytes: 10,
    networkTxBytes: 20,
  };
  const store = {
    sandboxesInStatus: async (statuses: string[]) => (statuses.includes(record.status) ? [record] : []),
  } as unknown as Store;
  const runtime = {
    stats: async () => stats,
    // Port 1: nothing listens there, the process count is null, as when the agent does not answer.
    agentEndpoint: () => ({ host: "127.0.0.1", port: agentPort, token: "t" }),
  } as unknown as SandboxRuntime;
  const clock = { ms: Date.UTC(2026, 0, 1) };
  const sampler = new MetricsSampler(store, runtime, pino({ level: "silent" }), 50, {
    monotonicMs: () => clock.ms,
    wallMs: () => clock.ms,
  });
  return {
    record,
    sampler,
    advance: (ms: number) => {
      clock.ms += ms;
    },
    setStats: (patch: Partial<SandboxStats> | undefined) => {
      stats = patch === undefined ? undefined : { ...stats!, ...patch };
    },
    samples: () => sampler.metricsOf("sbx_a").samples,
  };
}

/** Runs a round, lets `ms` pass, and runs the next one with the CPU having used `cpuMs` meanwhile. */
async function twoRounds(f: ReturnType<typeof fixture>, ms: number, cpuMs: number, startNs = 0) {
  f.setStats({ cpuUsageNs: startNs });
  await f.sampler.sampleAll();
  f.advance(ms);
  f.setStats({ cpuUsageNs: startNs + cpuMs * 1e6 });
  await f.sampler.sampleAll();
}

/** An agent that answers `/activity` with what `answer` holds at the time, or 404 (an older agent). */
async function fakeAgent(answer: { processes: number; running: number } | "none") {
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith("/activity") && answer !== "none") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer));
    } else if (req.url?.startsWith("/files/list")) {
      res.setHeader("content-type", "application/json");
      const dir = (name: string) => ({
        name,
        path: `/proc/${name}`,
        type: "dir",
        size: 0,
        mode: 0o555,
        mtime: "",
        uid: 0,
        gid: 0,
      });
      res.end(JSON.stringify([dir("1"), dir("2"), dir("self"), dir("17")]));
    } else {
      res.statusCode = 404;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ code: "not_found", message: "no such endpoint" }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

describe("MetricsSampler", () => {
  it("takes a baseline first, then a CPU rate as a percent of the sandbox's vCPUs", async () => {
    const f = fixture(2);
    await f.sampler.sampleAll();
    expect(f.samples()).toEqual([]);
    f.setStats({ cpuUsageNs: 0 });
    await twoRounds(f, 200, 200);
    const [sample] = f.samples().slice(-1);
    // 200 ms of CPU in 200 ms on 2 vCPUs: half.
    expect(sample!.cpuPercent).toBe(50);
    expect(sample).toMatchObject({
      memoryBytes: 100 * MiB,
      memoryLimitBytes: 1024 * MiB,
      diskBytes: 5 * MiB,
      diskLimitBytes: 1000 * MiB,
      networkRxBytes: 10,
      networkTxBytes: 20,
      processes: null,
    });
    expect(sample!.at).toBe(new Date(Date.UTC(2026, 0, 1) + 200).toISOString());
  });

  it("caps the rate at 100 and starts over when the counters restart", async () => {
    const f = fixture(1);
    await twoRounds(f, 50, 500);
    expect(f.samples().at(-1)!.cpuPercent).toBe(100);
    const before = f.samples().length;
    // A resumed sandbox's counter starts from zero again: that round is a new baseline, not a sample.
    f.setStats({ cpuUsageNs: 1e6 });
    await f.sampler.sampleAll();
    expect(f.samples().length).toBe(before);
    f.setStats({ cpuUsageNs: 1e6 });
    f.advance(50);
    await f.sampler.sampleAll();
    expect(f.samples().length).toBe(before + 1);
    expect(f.samples().at(-1)!.cpuPercent).toBe(0);
  });

  it("keeps a paused sandbox's history without sampling it, and forgets a destroyed one", async () => {
    const f = fixture(1);
    await twoRounds(f, 20, 1);
    const kept = f.samples();
    expect(kept.length).toBe(1);
    f.record.status = "paused";
    await f.sampler.sampleAll();
    await f.sampler.sampleAll();
    expect(f.samples()).toEqual(kept);
    f.record.status = "running";
    await f.sampler.sampleAll();
    // Back from the pause, the first round is a baseline again.
    expect(f.samples()).toEqual(kept);
    f.advance(50);
    await f.sampler.sampleAll();
    expect(f.samples().length).toBe(2);
    f.record.status = "destroyed";
    await f.sampler.sampleAll();
    expect(f.samples()).toEqual([]);
  });

  it("skips a round whose counters cannot be read, and filters by time", async () => {
    const f = fixture(1);
    await twoRounds(f, 20, 1);
    f.setStats(undefined);
    await f.sampler.sampleAll();
    expect(f.samples().length).toBe(1);
    f.setStats({ cpuUsageNs: 0 });
    await f.sampler.sampleAll();
    f.advance(5);
    await f.sampler.sampleAll();
    const all = f.samples();
    expect(all.length).toBe(2);
    const since = Date.parse(all[0]!.at);
    expect(f.sampler.metricsOf("sbx_a", since).samples).toEqual(all.slice(1));
    expect(f.sampler.metricsOf("sbx_other")).toEqual({ sandboxId: "sbx_other", intervalMs: 50, samples: [] });
  });

  it("counts a sandbox as working when a guest thread waits to run, though it received little CPU", async () => {
    const agent = await fakeAgent({ processes: 3, running: 1 });
    try {
      const f = fixture(1, agent.port);
      // 1 ms of CPU in 500 ms: a loop starved by a busy host looks like an idle sandbox's spin.
      await twoRounds(f, 500, 1);
      expect(f.samples().at(-1)).toMatchObject({ cpuPercent: 0.2, processes: 3 });
      expect(f.samples().at(-1)).not.toHaveProperty("running");
      expect(f.sampler.workedSince("sbx_a", 0)).toBe(true);
    } finally {
      agent.close();
    }
  });

  it("counts a quiet sandbox as idle, and one without samples in the window as working", async () => {
    const agent = await fakeAgent({ processes: 3, running: 0 });
    try {
      const f = fixture(1, agent.port);
      await twoRounds(f, 500, 1);
      expect(f.sampler.workedSince("sbx_a", 0)).toBe(false);
      // Nothing sampled after the last round: idleness is not shown.
      const last = Date.parse(f.samples().at(-1)!.at);
      expect(f.sampler.workedSince("sbx_a", last)).toBe(true);
    } finally {
      agent.close();
    }
  });

  it("counts a sandbox whose agent does not answer as working", async () => {
    // Port 1: nothing answers, as when the agent is starved of CPU along with the sandbox's work.
    const f = fixture(1);
    await twoRounds(f, 500, 1);
    expect(f.samples().at(-1)!.processes).toBeNull();
    expect(f.sampler.workedSince("sbx_a", 0)).toBe(true);
  });

  it("counts the processes of an agent without /activity from its /proc listing", async () => {
    const agent = await fakeAgent("none");
    try {
      const f = fixture(1, agent.port);
      await twoRounds(f, 500, 1);
      expect(f.samples().at(-1)!.processes).toBe(3);
      expect(f.sampler.workedSince("sbx_a", 0)).toBe(false);
    } finally {
      agent.close();
    }
  });
});
