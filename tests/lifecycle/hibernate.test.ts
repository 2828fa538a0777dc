import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { keeperState, startKeeper } from "../helpers/memory-keeper.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;

// A short quiet period, so that idle sandboxes hibernate within the test.
useTestServer(
  (_s, a) => {
    api = a;
  },
  // Samples often enough that a working sandbox shows its work within the quiet period.
  { SANDPIT_HIBERNATE_AFTER_MS: "2000", SANDPIT_METRICS_INTERVAL_MS: "500" },
);

type HibernatingBody = SandboxBody & { hibernate: boolean };
const get = async (id: string) => (await api.get<HibernatingBody>(`/v1/sandboxes/${id}`)).body;

describe("hibernation of idle sandboxes", () => {
  it("checkpoints an idle sandbox, resumes it on its next exec with its memory, and leaves an opted-out one running", async () => {
    // The opted-out sandbox is idle for longer than the other: had it been eligible, the supervisor would
    // have begun its hibernation no later than the other's.
    const stays = await api.createSandbox({ hibernate: false });
    expect((await get(stays.id)).hibernate).toBe(false);
    const idle = await api.createSandbox({});
    expect((await get(idle.id)).hibernate).toBe(true);
    // Quiet on the API but working on its own (a job in the background): not idle.
    const working = await api.createSandbox({});
    const job = await api.exec(working.id, { command: "while :; do :; done", background: true });
    expect(job.commandId).toBeTruthy();
    // As starved as on a host busy with other sandboxes: 2 % of a core, less CPU than an idle one spins.
    writeFileSync(`/sys/fs/cgroup/cpu/sandpit/${working.id}/cpu.cfs_quota_us`, "2000");
    const before = await startKeeper(api, idle.id);
    const expiresAt = (await get(idle.id)).expiresAt;

    // Reading the sandbox is not activity: polling it does not keep it awake.
    const hibernated = await waitFor(
      async () => {
        const s = await get(idle.id);
        return s.status === "paused" ? s : undefined;
      },
      60_000,
      "the idle sandbox to hibernate",
    );
    expect(hibernated.reason).toBe("hibernated");
    expect(hibernated.expiresAt).toBe(expiresAt);
    expect((await get(stays.id)).status).toBe("running");
    expect((await get(working.id)).status).toBe("running");

    // The next exec resumes it transparently: the same process, which went on counting.
    const after = await keeperState(api, idle.id);
    expect(after.token).toBe(before.token);
    expect(after.pid).toBe(before.pid);
    expect(after.n).toBeGreaterThan(before.n);
    const resumed = await get(idle.id);
    expect(resumed.status).toBe("running");
    expect(resumed.reason).toBeNull();
    expect(resumed.expiresAt).toBe(expiresAt);
    expect((await get(stays.id)).status).toBe("running");
  });

  it("turns a hibernated sandbox into an ordinary pause when asked to pause it", async () => {
    const s = await api.createSandbox({});
    await waitFor(async () => ((await get(s.id)).status === "paused" ? true : undefined), 60_000, "hibernation");
    const paused = await api.post<HibernatingBody>(`/v1/sandboxes/${s.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ status: "paused", reason: null, expiresAt: null });
    // An ordinary pause without autoResume: an exec is refused until a resume.
    expect((await api.post(`/v1/sandboxes/${s.id}/exec`, { command: "true" })).status).toBe(409);
    expect((await api.post<HibernatingBody>(`/v1/sandboxes/${s.id}/resume`)).body.status).toBe("running");
  });

  it("refuses a hibernate field that is not a boolean, naming it", async () => {
    const res = await api.post<{ error: { code: string; message: string } }>("/v1/sandboxes", { hibernate: "no" });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain("hibernate");
  });
});
