// The supervisor's hibernation pacing over a fake store and services (hibernation itself is tested in
// tests/lifecycle/hibernate.test.ts against real sandboxes).
import pino from "pino";
import { describe, expect, it } from "vitest";
import { sandboxRecord } from "../dialects/sandbox-record.fixture.js";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { AgentPool } from "./agent-pool.js";
import type { SandboxDeaths } from "./sandbox-deaths.js";
import type { SandboxService } from "./sandbox-service.js";
import { SandboxSupervisor } from "./sandbox-supervisor.js";

/** A supervisor over `records` whose hibernations stay pending until `finish` is called. */
function supervisorOver(
  records: SandboxRecord[],
  opts: ConstructorParameters<typeof SandboxSupervisor>[6],
  lastActivity: Record<string, number> = {},
  refused = new Set<string>(),
) {
  const store = {
    sandboxesInStatus: async (statuses: string[]) => records.filter((s) => statuses.includes(s.status)),
  } as unknown as Store;
  const pending: (() => void)[] = [];
  const hibernated: string[] = [];
  const sandboxes = {
    lastActivityOf: (id: string) => lastActivity[id],
    isCreating: () => false,
    isDestroying: () => false,
    hibernate: (id: string) => {
      hibernated.push(id);
      if (refused.has(id)) return Promise.reject(new Error("refused: a deleted file is in use"));
      const record = records.find((s) => s.id === id)!;
      return new Promise<SandboxRecord>((resolve) =>
        pending.push(() => {
          record.status = "paused";
          resolve(record);
        }),
      );
    },
  } as unknown as SandboxService;
  const runtime = { alive: async () => true } as unknown as SandboxRuntime;
  const deaths = { isMarking: () => false } as unknown as SandboxDeaths;
  const supervisor = new SandboxSupervisor(
    store,
    runtime,
    sandboxes,
    deaths,
    {} as AgentPool,
    pino({ level: "silent" }),
    opts,
  );
  // The supervisor counts activity from its own start: move its start back past the quiet periods.
  Object.assign(supervisor, { startedAt: Date.now() - 3_600_000 });
  const finishAll = async () => {
    while (pending.length) pending.shift()!();
    await new Promise((r) => setImmediate(r));
  };
  return { supervisor, hibernated, pending, finishAll };
}

const sandboxId = (n: number) => `sbx_${String(n).repeat(20)}`;

describe("hibernation of idle sandboxes", () => {
  it("checkpoints at most two at a time, without holding up the tick, and the others on later ticks", async () => {
    // Five sandboxes idle for an hour, with no expiry: all five are due for hibernation.
    const idle = [1, 2, 3, 4, 5].map((n) =>
      sandboxRecord({ id: sandboxId(n), startedAt: Date.now() - 3_600_000, expiresAt: null }),
    );
    const { supervisor, hibernated, pending } = supervisorOver(idle, { hibernateAfterMs: 60_000 });

    await supervisor.tick();
    expect(hibernated).toHaveLength(2);
    await supervisor.tick();
    expect(hibernated).toHaveLength(2);
    pending.shift()!();
    await new Promise((r) => setImmediate(r));
    await supervisor.tick();
    expect(hibernated).toHaveLength(3);
    expect(new Set(hibernated).size).toBe(3);
  });

  it("past the live-idle limit hibernates the longest idle early, never one quiet for less than the least time", async () => {
    const t = Date.now();
    // Quiet for 50, 40, 30, 20 and 5 seconds; the quiet period (5 min) has ended for none of them.
    const quietS = [50, 40, 30, 20, 5];
    const records = quietS.map((_, i) =>
      sandboxRecord({ id: sandboxId(i + 1), startedAt: t - 600_000, expiresAt: null }),
    );
    const optedOut = sandboxRecord({ id: sandboxId(6), startedAt: t - 600_000, expiresAt: null, hibernate: false });
    const lastActivity = Object.fromEntries(quietS.map((q, i) => [sandboxId(i + 1), t - q * 1000]));
    lastActivity[optedOut.id] = t - 100_000;
    const { supervisor, hibernated, finishAll } = supervisorOver(
      [...records, optedOut],
      { hibernateAfterMs: 300_000, liveIdleMax: 1, hibernateUnderPressureAfterMs: 15_000 },
      lastActivity,
    );

    // Four have been quiet for 15 s or more and one may stay live: the three longest idle go, two at a time.
    await supervisor.tick();
    expect(hibernated).toEqual([sandboxId(1), sandboxId(2)]);
    await finishAll();
    await supervisor.tick();
    expect(hibernated).toEqual([sandboxId(1), sandboxId(2), sandboxId(3)]);
    await finishAll();
    // Under the limit now: the one quiet for 20 s stays live, and so do the one quiet for 5 s and the opted-out one.
    await supervisor.tick();
    expect(hibernated).toHaveLength(3);
  });

  it("does not hibernate early under the limit, nor a sandbox that works on its own", async () => {
    const t = Date.now();
    const records = [1, 2, 3].map((n) => sandboxRecord({ id: sandboxId(n), startedAt: t - 600_000, expiresAt: null }));
    const lastActivity = Object.fromEntries(records.map((r) => [r.id, t - 60_000]));
    const working = sandboxId(1);
    const { supervisor, hibernated } = supervisorOver(
      records,
      {
        hibernateAfterMs: 300_000,
        liveIdleMax: 1,
        hibernateUnderPressureAfterMs: 15_000,
        workedSince: (id) => id === working,
      },
      lastActivity,
    );
    await supervisor.tick();
    // Two idle and one working: one idle over the limit, and the working one is not idle.
    expect(hibernated).toHaveLength(1);
    expect(hibernated[0]).not.toBe(working);
  });

  it("past the limit, passes over one whose hibernation was just refused and takes the next longest idle", async () => {
    const t = Date.now();
    const records = [1, 2, 3].map((n) => sandboxRecord({ id: sandboxId(n), startedAt: t - 600_000, expiresAt: null }));
    const lastActivity = { [sandboxId(1)]: t - 90_000, [sandboxId(2)]: t - 60_000, [sandboxId(3)]: t - 30_000 };
    const { supervisor, hibernated } = supervisorOver(
      records,
      { hibernateAfterMs: 300_000, liveIdleMax: 2, hibernateUnderPressureAfterMs: 15_000 },
      lastActivity,
      new Set([sandboxId(1)]),
    );
    await supervisor.tick();
    expect(hibernated).toEqual([sandboxId(1)]);
    await new Promise((r) => setImmediate(r));
    // Refused: it stays live and counted, so one more must go, and it is the next longest idle.
    await supervisor.tick();
    expect(hibernated).toEqual([sandboxId(1), sandboxId(2)]);
  });
});
