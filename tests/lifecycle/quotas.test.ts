import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-test-key-0123456789";
let server: TestServer;
let api: ReturnType<typeof apiClient>;
let admin: ReturnType<typeof apiClient>;

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_ADMIN_KEY: ADMIN_KEY });
  api = apiClient(server);
  admin = apiClient(server, ADMIN_KEY);
});

afterAll(async () => {
  await server?.close();
});

const setQuota = (quota: Record<string, number | null>) =>
  admin.call("PUT", "/v1/admin/orgs/default/quota", {
    maxSandboxes: null,
    maxVcpus: null,
    maxMemoryMb: null,
    ...quota,
  });

describe("quotas", () => {
  it("never overshoots under concurrent creates, and names the limit", async () => {
    expect((await setQuota({ maxSandboxes: 2 })).status).toBe(200);
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        api.call<SandboxBody & ErrorBody>("POST", "/v1/sandboxes", { metadata: { q: "1" } }),
      ),
    );
    const created = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 409);
    expect(created).toHaveLength(2);
    expect(refused).toHaveLength(3);
    expect(refused[0]!.body.error.code).toBe("quota_exceeded");
    expect(refused[0]!.body.error.message).toContain("at most 2 sandboxes");
    expect((await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes?metadata.q=1")).body.sandboxes).toHaveLength(2);
    // Destroying one frees its place.
    await api.del(`/v1/sandboxes/${created[0]!.body.id}`);
    const again = await api.call<SandboxBody>("POST", "/v1/sandboxes", {});
    expect(again.status).toBe(201);
    await Promise.all([created[1]!.body.id, again.body.id].map((id) => api.del(`/v1/sandboxes/${id}`)));
  });

  it("limits total vcpus and memory", async () => {
    await setQuota({ maxVcpus: 3, maxMemoryMb: 2048 });
    const first = await api.createSandbox({ resources: { vcpus: 2, memoryMb: 1024 } });
    const vcpus = await api.post<ErrorBody>("/v1/sandboxes", { resources: { vcpus: 2, memoryMb: 512 } });
    expect(vcpus.status).toBe(409);
    expect(vcpus.body.error.message).toContain("vcpus");
    const memory = await api.post<ErrorBody>("/v1/sandboxes", { resources: { vcpus: 1, memoryMb: 1280 } });
    expect(memory.status).toBe(409);
    expect(memory.body.error.message).toContain("memory");
    await api.del(`/v1/sandboxes/${first.id}`);
    await setQuota({});
  });

  it("keeps the admin API behind the admin key", async () => {
    expect((await api.call("GET", "/v1/admin/orgs/default/quota")).status).toBe(401);
    const got = await admin.get<{ effective: { maxSandboxes: number | null } }>("/v1/admin/orgs/default/quota");
    expect(got.status).toBe(200);
    expect(got.body.effective.maxSandboxes).toBeNull();
    const bad = await admin.call<ErrorBody>("PUT", "/v1/admin/orgs/default/quota", { maxSandboxes: -1 });
    expect(bad.status).toBe(400);
  });
});
