import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-pool-key-0123456789";
const POOLS = [{ id: "small", template: "base", size: 2, vcpus: 1, memoryMb: 512, diskMb: 2048 }];
let server: TestServer;
let api: ReturnType<typeof apiClient>;
let admin: ReturnType<typeof apiClient>;

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_ADMIN_KEY: ADMIN_KEY, SANDPIT_WARM_POOLS: JSON.stringify(POOLS) });
  api = apiClient(server);
  admin = apiClient(server, ADMIN_KEY);
});

afterAll(async () => {
  // Pooled sandboxes belong to the pool, not to the test's organisation: remove the pool first.
  await admin?.del("/v1/admin/warm-pools/small");
  await server?.close();
});

const ready = async () =>
  (await admin.get<{ pools: { id: string; ready: number }[] }>("/v1/admin/warm-pools")).body.pools.find(
    (p) => p.id === "small",
  )?.ready ?? 0;

describe("warm pools", () => {
  it("serves a matching create from the pool with the request's env, metadata and timeout, then refills", async () => {
    await waitFor(async () => ((await ready()) === 2 ? true : undefined), 60_000, "the pool to fill");
    const started = Date.now();
    const res = await api.post<SandboxBody & { warmPoolCheckout: { hit: boolean; poolId: string } }>("/v1/sandboxes", {
      resources: { vcpus: 1, memoryMb: 512, diskMb: 2048 },
      env: { GREETING: "from the request" },
      metadata: { owner: "test" },
      timeoutMs: 120_000,
      cwd: "/srv/app",
    });
    const tookMs = Date.now() - started;
    expect(res.status).toBe(201);
    expect(res.body.warmPoolCheckout).toEqual({ hit: true, poolId: "small" });
    expect(res.body.metadata).toEqual({ owner: "test" });
    expect(Date.parse(res.body.expiresAt!) - Date.now()).toBeGreaterThan(100_000);
    const r = await api.exec(res.body.id, { command: 'echo "$GREETING in $(pwd)"' });
    expect(r.stdout).toBe("from the request in /srv/app\n");
    expect(
      (await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.owner=test")).body.sandboxes,
    ).toHaveLength(1);
    // A pooled sandbox is not visible to any organisation before checkout.
    expect((await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes")).body.sandboxes).toHaveLength(1);
    process.stderr.write(`[warm-pools] checkout create took ${tookMs} ms\n`);
    await waitFor(async () => ((await ready()) === 2 ? true : undefined), 60_000, "the pool to refill");
    await api.del(`/v1/sandboxes/${res.body.id}`);
  });

  it("bypasses or requires a pool on request", async () => {
    const cold = await api.post<SandboxBody & { warmPoolCheckout?: unknown }>("/v1/sandboxes", {
      resources: { vcpus: 1, memoryMb: 512, diskMb: 2048 },
      warmPool: { mode: "bypass" },
    });
    expect(cold.status).toBe(201);
    expect(cold.body.warmPoolCheckout).toBeUndefined();
    const missing = await api.post<ErrorBody>("/v1/sandboxes", { warmPool: { mode: "require", poolId: "nope" } });
    expect(missing.status).toBe(404);
    const noMatch = await api.post<ErrorBody>("/v1/sandboxes", {
      resources: { vcpus: 2, memoryMb: 512 },
      warmPool: { mode: "require" },
    });
    expect(noMatch.status).toBe(409);
    await api.del(`/v1/sandboxes/${cold.body.id}`);
  });

  it("serves provider dialects' creates from the pool too, counted in the create metric (ZWRM)", async () => {
    // ZWRM's default size (shared-cpu-1x: 1 vCPU, 1 GiB) on the default disk.
    const put = await fetch(`${server.url}/v1/admin/warm-pools/zwrm-size`, {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ template: "base", size: 1, resources: { vcpus: 1, memoryMb: 1024, diskMb: 4096 } }),
    });
    expect(put.status).toBe(200);
    try {
      const zwrmReady = async () =>
        (await admin.get<{ pools: { id: string; ready: number }[] }>("/v1/admin/warm-pools")).body.pools.find(
          (p) => p.id === "zwrm-size",
        )?.ready ?? 0;
      await waitFor(async () => ((await zwrmReady()) === 1 ? true : undefined), 60_000, "the ZWRM-sized pool to fill");
      const warmCreates = async () => {
        const text = await (
          await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
        ).text();
        const name = 'sandpit_sandbox_create_duration_seconds_count{source="warm_pool"} ';
        return Number(
          text
            .split("\n")
            .find((l) => l.startsWith(name))
            ?.slice(name.length) ?? 0,
        );
      };
      const before = await warmCreates();
      const res = await fetch(`${server.url}/zwrm/v1/sandboxes`, {
        method: "POST",
        headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ template: "base", metadata: { via: "zwrm" } }),
      });
      expect(res.status).toBe(201);
      const created = (await res.json()) as { id: string; status: string; metadata: Record<string, string> };
      expect(created.status).toBe("running");
      expect(created.metadata).toEqual({ via: "zwrm" });
      expect(await warmCreates()).toBe(before + 1);
      await api.del(`/v1/sandboxes/${created.id}`);
    } finally {
      await admin.del("/v1/admin/warm-pools/zwrm-size");
    }
  });
});
