import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Leap0's sandbox, as its document describes the create response. */
interface Leap0Sandbox {
  id: string;
  template_id: string;
  vcpu: number;
  memory_mib: number;
  disk_mib: number;
  state: "starting" | "running" | "snapshotting" | "paused" | "unpausing" | "deleting" | "deleted";
  auto_pause: boolean;
  network_policy?: {
    mode: "allow-all" | "deny-all" | "custom";
    allow_domains?: string[];
    allow_cidrs?: string[];
    transforms?: { domain: string; inject_headers?: Record<string, string>; strip_headers?: string[] }[];
  };
  created_at: string;
}
interface Leap0ValidationError {
  message: string;
  errors: { field: string; error: string }[];
}

const ADMIN_KEY = "leap0-admin-key-0123456789";
/** The Leap0 limit of this server: 2 instead of Leap0's 3, to keep the test at two real sandboxes. */
const LIMIT = 2;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let admin: ReturnType<typeof apiClient>;
let intruderKey: string;

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_ADMIN_KEY: ADMIN_KEY, SANDPIT_LEAP0_MAX_SANDBOXES: String(LIMIT) });
  api = apiClient(server);
  admin = apiClient(server, ADMIN_KEY);
  const { createApiKey } = await import("../../packages/server/src/index.js");
  intruderKey = (await createApiKey({ dataDir: server.dataDir, org: "leap0-intruder" })).key;
});

afterAll(async () => {
  await server?.close();
});

/** A request as Leap0's document shows it: `Authorization: Bearer <key>` and a JSON body. */
async function leap0<T = unknown>(
  method: string,
  path: string,
  options: { body?: unknown; raw?: string; key?: string | null; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { ...options.headers };
  const key = options.key === undefined ? server.apiKey : options.key;
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  const body = options.raw ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${server.url}/leap0${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

const create = (body: unknown) => leap0<Leap0Sandbox>("POST", "/v1/sandbox/", { body });
const native = async (id: string) => (await api.get<SandboxBody & Record<string, unknown>>(`/v1/sandboxes/${id}`)).body;

function expectMessage(res: { status: number; body: unknown }, status: number, pattern?: RegExp) {
  expect(res.status).toBe(status);
  const body = res.body as { message: string };
  expect(Object.keys(body)).toEqual(["message"]);
  expect(body.message.length).toBeGreaterThan(0);
  if (pattern) expect(body.message).toMatch(pattern);
}

function expectInvalid(res: { status: number; body: unknown }, fields: string[]) {
  expect(res.status).toBe(400);
  const body = res.body as Leap0ValidationError;
  expect(body.message).toBe("Invalid request");
  expect(body.errors.map((e) => e.field)).toEqual(fields);
  for (const e of body.errors) expect(e.error.length).toBeGreaterThan(0);
}

const valid = { template_name: "base", vcpu: 1, memory_mib: 512 };

describe("Leap0 dialect", () => {
  it("authenticates with the Sandpit key as a Bearer token or in leap0-authorization", async () => {
    expectMessage(await leap0("POST", "/v1/sandbox/", { body: valid, key: null }), 401);
    expectMessage(await leap0("POST", "/v1/sandbox/", { body: valid, key: "sp_wrong" }), 401);
    expectMessage(await leap0("GET", "/v1/sandboxes", { key: null, headers: { "leap0-authorization": "nope" } }), 401);
    const alternative = await leap0<{ items: Leap0Sandbox[]; total_items: number }>("GET", "/v1/sandboxes", {
      key: null,
      headers: { "leap0-authorization": server.apiKey },
    });
    expect(alternative.status).toBe(200);
    expect(alternative.body).toEqual({ items: [], total_items: 0 });
  });

  it("answers {message, errors:[{field, error}]} for every documented bound and missing field", async () => {
    expectInvalid(await create({}), ["template_name", "vcpu", "memory_mib"]);
    const cases: [Record<string, unknown>, string][] = [
      [{ vcpu: 0 }, "vcpu"],
      [{ vcpu: 9 }, "vcpu"],
      [{ vcpu: 1.5 }, "vcpu"],
      [{ vcpu: "2" }, "vcpu"],
      [{ memory_mib: 510 }, "memory_mib"],
      [{ memory_mib: 8194 }, "memory_mib"],
      [{ memory_mib: 1025 }, "memory_mib"],
      [{ timeout_min: 0 }, "timeout_min"],
      [{ timeout_min: 481 }, "timeout_min"],
      [{ auto_pause: "yes" }, "auto_pause"],
      [{ template_name: "Not A Template!" }, "template_name"],
      [{ env_vars: { "BAD-NAME": "x" } }, "env_vars.BAD-NAME"],
      [{ network_policy: { mode: "allow-some" } }, "network_policy.mode"],
      [{ network_policy: {} }, "network_policy.mode"],
      [{ network_policy: { mode: "deny-all", allow_domains: ["example.com"] } }, "network_policy.allow_domains"],
      [{ network_policy: { mode: "custom", allow_cidrs: ["10.0.0.0/33"] } }, "network_policy.allow_cidrs.0"],
      [
        { network_policy: { mode: "allow-all", transforms: [{ inject_headers: {} }] } },
        "network_policy.transforms.0.domain",
      ],
      [{ mounts: [] }, "mounts"],
    ];
    for (const [patch, field] of cases) expectInvalid(await create({ ...valid, ...patch }), [field]);
    const many = (n: number, f: (i: number) => unknown) => Array.from({ length: n }, (_, i) => f(i));
    expectInvalid(
      await create({
        ...valid,
        network_policy: {
          mode: "custom",
          allow_domains: many(51, (i) => `d${i}.example.com`),
          allow_cidrs: many(11, (i) => `10.0.0.${i}`),
          transforms: many(21, (i) => ({ domain: `t${i}.example.com` })),
        },
      }),
      ["network_policy.allow_domains", "network_policy.allow_cidrs", "network_policy.transforms"],
    );
    expectInvalid(await leap0("POST", "/v1/sandbox/", { raw: "{not json" }), ["body"]);
    // The upper bounds themselves are accepted (stopped by the template check, which comes after validation).
    expectMessage(
      await create({ template_name: "no-such-template", vcpu: 8, memory_mib: 8192, timeout_min: 480 }),
      404,
      /no-such-template/,
    );
  });

  it("creates sandboxes as documented, up to the organisation's limit, and gets, lists, pauses, resumes and deletes them", async () => {
    const before = Date.now();
    const res = await create({
      template_name: "base",
      env_vars: { GREETING: "hello leap0" },
      vcpu: 2,
      memory_mib: 1024,
      timeout_min: 10,
      auto_pause: true,
      network_policy: {
        mode: "custom",
        allow_domains: ["example.com", "*.example.org"],
        allow_cidrs: ["192.0.2.0/24"],
        transforms: [
          {
            domain: "api.example.com",
            inject_headers: { Authorization: "Bearer secret-1" },
            strip_headers: ["x-debug"],
          },
        ],
      },
    });
    expect(res.status).toBe(201);
    const a = res.body;
    expect(a).toEqual({
      id: expect.stringMatching(/^sbx_/),
      template_id: "base",
      vcpu: 2,
      memory_mib: 1024,
      disk_mib: 4096,
      state: "running",
      auto_pause: true,
      network_policy: {
        mode: "custom",
        allow_domains: ["example.com", "*.example.org"],
        allow_cidrs: ["192.0.2.0/24"],
        transforms: [
          { domain: "api.example.com", inject_headers: { Authorization: "[redacted]" }, strip_headers: ["x-debug"] },
        ],
      },
      created_at: expect.stringMatching(ISO),
    });
    expect(Date.parse(a.created_at)).toBeGreaterThanOrEqual(before - 1000);
    // The same sandbox in Sandpit's own terms: the timeout pauses, the policy and brokering are Sandpit's.
    const nativeA = await native(a.id);
    expect(nativeA).toMatchObject({
      status: "running",
      timeoutAction: "pause",
      resources: { vcpus: 2, memoryMb: 1024 },
      networkPolicy: {
        mode: "custom",
        allow: { domains: ["example.com", "*.example.org"], cidrs: ["192.0.2.0/24"] },
        transforms: [{ domain: "api.example.com", stripHeaders: ["x-debug"] }],
      },
    });
    expect(Date.parse(nativeA.expiresAt!) - Date.parse(nativeA.startedAt!)).toBe(600_000);
    const greeting = await api.exec(a.id, { command: "echo $GREETING" });
    expect(greeting.stdout).toBe("hello leap0\n");

    // Defaults: timeout 5 minutes, no auto-pause, allow-all; an even memory Sandpit cannot run exactly is
    // rounded up to its next 256 MiB step, and the response shows what was assigned.
    const second = await create({ template_name: "base", vcpu: 1, memory_mib: 1000 });
    expect(second.status).toBe(201);
    const b = second.body;
    expect(b).toMatchObject({ template_id: "base", vcpu: 1, memory_mib: 1024, state: "running", auto_pause: false });
    expect(b.network_policy).toEqual({ mode: "allow-all" });
    const nativeB = await native(b.id);
    expect(nativeB).toMatchObject({ timeoutAction: "destroy", networkPolicy: { mode: "allow-all" } });
    expect(Date.parse(nativeB.expiresAt!) - Date.parse(nativeB.startedAt!)).toBe(300_000);

    // The limit: a third sandbox is a 409 conflict, and nothing was created.
    expectMessage(await create(valid), 409, new RegExp(`at most ${LIMIT} sandboxes per organization`));
    expect((await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes")).body.sandboxes).toHaveLength(2);
    // The organisation's own Sandpit quota applies too when it is lower (set by an operator).
    const quota = { maxSandboxes: 0, maxVcpus: null, maxMemoryMb: null };
    expect((await admin.call("PUT", "/v1/admin/orgs/leap0-intruder/quota", quota)).status).toBe(200);
    expectMessage(
      await leap0("POST", "/v1/sandbox/", { body: valid, key: intruderKey }),
      409,
      /at most 0 sandboxes per organization/,
    );

    // Get, and the organisation boundary.
    const got = await leap0<Leap0Sandbox>("GET", `/v1/sandbox/${a.id}/`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(a);
    expectMessage(await leap0("GET", `/v1/sandbox/${a.id}/`, { key: intruderKey }), 404);
    expectMessage(await leap0("GET", "/v1/sandbox/sbx_aaaaaaaaaaaaaaaaaaaa/"), 404);
    expectMessage(await leap0("DELETE", `/v1/sandbox/${a.id}/`, { key: intruderKey }), 404);

    // List: items and total, filtered by state, sorted and paged.
    const listed = await leap0<{ items: Leap0Sandbox[]; total_items: number }>("GET", "/v1/sandboxes");
    expect(listed.status).toBe(200);
    expect(listed.body.total_items).toBe(2);
    expect(listed.body.items.map((s) => s.id)).toEqual([b.id, a.id]);
    const paged = await leap0<{ items: Leap0Sandbox[] }>("GET", "/v1/sandboxes?order-by=asc&page-size=1&page=2");
    expect(paged.body.items.map((s) => s.id)).toEqual([b.id]);

    // Pause and resume (Leap0's pause and resume endpoints): paused, then running again with its state.
    await api.exec(a.id, { command: "echo kept > /tmp/state" });
    const paused = await leap0<Leap0Sandbox>("POST", `/v1/sandbox/${a.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body.state).toBe("paused");
    const pausedList = await leap0<{ items: Leap0Sandbox[]; total_items: number }>("GET", "/v1/sandboxes?state=paused");
    expect(pausedList.body.items.map((s) => s.id)).toEqual([a.id]);
    expect((await leap0("GET", "/v1/sandboxes?state=sleeping")).status).toBe(400);
    const resumed = await leap0<Leap0Sandbox>("POST", `/v1/sandbox/${a.id}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body.state).toBe("running");
    expect((await api.exec(a.id, { command: "cat /tmp/state" })).stdout).toBe("kept\n");

    // Delete: a message; the sandbox shows as deleted and no longer counts against the limit.
    const deleted = await leap0<{ message: string }>("DELETE", `/v1/sandbox/${b.id}/`);
    expect(deleted.status).toBe(200);
    expect(deleted.body.message).toMatch(b.id);
    expect((await leap0<Leap0Sandbox>("GET", `/v1/sandbox/${b.id}/`)).body.state).toBe("deleted");
    expect((await leap0<{ total_items: number }>("GET", "/v1/sandboxes")).body.total_items).toBe(1);
    expectMessage(await leap0("POST", `/v1/sandbox/${b.id}/pause`), 409);
    expect((await leap0("DELETE", `/v1/sandbox/${a.id}`)).status).toBe(200);
  });
});
