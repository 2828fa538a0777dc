import { describe, expect, it } from "vitest";
import type { apiClient } from "../helpers/api.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;

useTestServer((_s, a) => {
  api = a;
});

describe("create phases", () => {
  it("answers a create with the time of each of its phases in a Server-Timing header", async () => {
    const res = await api.post("/v1/sandboxes", {});
    expect(res.status).toBe(201);
    const phases = new Map(
      (res.headers.get("server-timing") ?? "").split(", ").map((part) => {
        const [name, dur] = part.split(";dur=");
        return [name, Number(dur)] as const;
      }),
    );
    for (const name of ["origin", "db", "netns", "rootfs", "runsc", "agent", "nft", "cwd", "total"]) {
      expect(phases.get(name), name).toBeGreaterThanOrEqual(0);
    }
    // The phases happen within the create; the runsc start is the longest single step of it.
    for (const [name, ms] of phases) expect(ms, name).toBeLessThanOrEqual(phases.get("total")!);
    expect(phases.get("runsc")!).toBeGreaterThan(0);
  });
});
