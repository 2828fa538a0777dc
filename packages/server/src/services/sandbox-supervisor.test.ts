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

describe("hibernation of idle sandboxes", () => {
  it("checkpoints at most two at a time, without holding up the tick, and the others on later ticks", async () => {
    // Five sandboxes idle for an hour, with no expiry: all five are due for hibernation.
    const idle = [1, 2, 3, 4, 5].map((n) =>
      sandboxRecord({ id: `sbx_${String(n).repeat(20)}`, startedAt: Date.now() - 3_600_000, expiresAt: null }),
    );
    const store = {
      sandboxesInStatus: async (statuses: string[]) => idle.filter((s) => statuses.includes(s.status)),
    } as unknown as Store;
    const pending: (() => void)[] = [];
    const hibernated: string[] = [];
    const sandboxes = {
      lastActivityOf: () => undefined,
      isCreating: () => false,
      isDestroying: () => false,
      hibernate: (id: string) => {
        hibernated.push(id);
        const record = idle.find((s) => s.id === id)!;
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
      { hibernateAfterMs: 60_000 },
    );
    // The supervisor counts activity from its own start: move its start back past the quiet period.
    Object.assign(supervisor, { startedAt: Date.now() - 3_600_000 });

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
});
