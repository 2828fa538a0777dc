import { describe, expect, it } from "vitest";
import { type apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;

// A quiet period that never ends within the test: only the live-idle limit (one) hibernates here.
useTestServer(
  (_s, a) => {
    api = a;
  },
  {
    SANDPIT_HIBERNATE_AFTER_MS: "3600000",
    SANDPIT_LIVE_IDLE_MAX: "1",
    SANDPIT_HIBERNATE_UNDER_PRESSURE_AFTER_MS: "3000",
    SANDPIT_METRICS_INTERVAL_MS: "500",
  },
);

const get = async (id: string) => (await api.get<SandboxBody>(`/v1/sandboxes/${id}`)).body;
const hibernated = (id: string) =>
  waitFor(
    async () => {
      const s = await get(id);
      return s.status === "paused" ? s : undefined;
    },
    60_000,
    `${id} to hibernate`,
  );

describe("the live-idle limit", () => {
  it("hibernates the longest idle sandbox once more than the limit are idle, long before the quiet period ends", async () => {
    const first = await api.createSandbox({});
    const second = await api.createSandbox({});

    const firstPaused = await hibernated(first.id);
    expect(firstPaused.reason).toBe("hibernated");
    // One idle sandbox may stay live: the one idle for less time.
    expect((await get(second.id)).status).toBe("running");

    // Its next call wakes it; now the other one is the longest idle, and it is the one to go.
    const out = await api.exec(first.id, { command: "echo awake" });
    expect(out.stdout).toBe("awake\n");
    expect((await hibernated(second.id)).reason).toBe("hibernated");
    expect((await get(first.id)).status).toBe("running");
  });
});
