import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** ZWRM's sandbox as Sandpit's ZWRM dialect answers it. */
interface ZwrmSandbox {
  id: string;
  template: string;
  mode: "ephemeral" | "persistent";
  status: "creating" | "running" | "suspended" | "destroyed";
  size: string | null;
  vcpus: number;
  memory_mb: number;
  timeout_seconds: number | null;
  idle_timeout_seconds: number | null;
  expires_at: string | null;
  metadata: Record<string, string>;
  egress: Record<string, unknown>;
  created_at: string;
  started_at: string | null;
  destroyed_at: string | null;
}
interface ZwrmError {
  error: string;
  code: string;
  fields?: { field: string; message: string }[];
}
interface ZwrmExec {
  stdout: string;
  stderr: string;
  exit_code: number;
  duration_ms: number;
  timed_out: boolean;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let intruderKey: string;

beforeAll(async () => {
  server = await startTestServer();
  api = apiClient(server);
  const { createApiKey } = await import("../../packages/server/src/index.js");
  intruderKey = (await createApiKey({ dataDir: server.dataDir, org: "zwrm-intruder" })).key;
});

afterAll(async () => {
  await server?.close();
});

/** A request as ZWRM's document shows it: `Authorization: Bearer <key>`, a JSON body or raw bytes. */
async function zwrm<T = unknown>(
  method: string,
  path: string,
  options: { body?: unknown; raw?: Uint8Array; key?: string | null; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: T; bytes: Buffer }> {
  const headers: Record<string, string> = { ...options.headers };
  const key = options.key === undefined ? server.apiKey : options.key;
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  let body: string | Uint8Array | undefined;
  if (options.raw) {
    body = options.raw;
    headers["Content-Type"] ??= "application/octet-stream";
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(`${server.url}/zwrm${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const bytes = Buffer.from(await res.arrayBuffer());
  const json = (res.headers.get("content-type") ?? "").includes("application/json");
  return {
    status: res.status,
    headers: res.headers,
    body: (json ? JSON.parse(bytes.toString()) : undefined) as T,
    bytes,
  };
}

const create = (body: unknown) => zwrm<ZwrmSandbox>("POST", "/v1/sandboxes", { body });
const native = async (id: string) => (await api.get<SandboxBody & Record<string, unknown>>(`/v1/sandboxes/${id}`)).body;

function expectError(res: { status: number; body: unknown }, status: number, field?: string) {
  const body = res.body as ZwrmError;
  expect(res.status).toBe(status);
  expect(typeof body.error).toBe("string");
  expect(body.error.length).toBeGreaterThan(0);
  expect(typeof body.code).toBe("string");
  if (field) expect(body.fields?.map((f) => f.field)).toContain(field);
}

describe("ZWRM dialect", () => {
  it("authenticates with the Sandpit key as a Bearer token or X-API-Key", async () => {
    expectError(await zwrm("GET", "/v1/sandboxes", { key: null }), 401);
    expectError(await zwrm("GET", "/v1/sandboxes", { key: "sp_wrong" }), 401);
    const viaHeader = await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes", {
      key: null,
      headers: { "X-API-Key": server.apiKey },
    });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body.sandboxes).toEqual([]);
  });

  it("answers 400 for an invalid mode, size, timeout or egress policy and 404 for an unknown template", async () => {
    const cases: [unknown, string][] = [
      [{}, "template"],
      [{ template: "base", mode: "forever" }, "mode"],
      [{ template: "base", size: "gigantic-cpu-64x" }, "size"],
      [{ template: "base", timeout: "25h" }, "timeout"],
      [{ template: "base", timeout: "10 minutes" }, "timeout"],
      [{ template: "base", mode: "persistent", timeout: "5m" }, "timeout"],
      [{ template: "base", mode: "ephemeral", idle_timeout: "5m" }, "idle_timeout"],
      [{ template: "base", mode: "persistent", idle_timeout: "25h" }, "idle_timeout"],
      [{ template: "base", env: { "1BAD": "x" } }, "env.1BAD"],
      [{ template: "base", egress: { mode: "block_all" } }, "egress.mode"],
      [{ template: "base", egress: { allow_cidrs: ["1.1.1.1/32"] } }, "egress.mode"],
      [{ template: "base", egress: { mode: "allow_all", deny_cidrs: ["10.0.0.0/8"] } }, "egress.deny_cidrs"],
      [{ template: "base", egress: { mode: "deny_all", allow_ports: [443] } }, "egress.allow_ports"],
      [{ template: "base", egress: { mode: "deny_all", deny_cidrs: ["169.254.0.0/16"] } }, "egress.deny_cidrs.0"],
      [{ template: "base", egress: { mode: "deny_all", allow_cidrs: ["1.1.1/33"] } }, "egress.allow_cidrs.0"],
      [
        { template: "base", egress: { mode: "deny_all", allow_cidrs: ["1.1.1.1"], allow_ports: [70000] } },
        "egress.allow_ports.0",
      ],
    ];
    for (const [body, field] of cases) expectError(await create(body), 400, field);
    expectError(
      await zwrm("POST", "/v1/sandboxes", { raw: Buffer.from("{"), headers: { "Content-Type": "application/json" } }),
      400,
    );
    const missing = await create({ template: "no-such-template" });
    expectError(missing, 404);
    expect((missing.body as unknown as ZwrmError).error).toMatch(/no-such-template/);
    expect((await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes")).body.sandboxes).toEqual([]);
  });

  it("runs an ephemeral sandbox: create, exec, upload, download, keepalive, wake, list, destroy", async () => {
    const before = Date.now();
    const res = await create({
      template: "base",
      mode: "ephemeral",
      timeout: "10m",
      size: "shared-cpu-2x",
      env: { GREETING: "hello from zwrm" },
      metadata: { team: "agents" },
      egress: {
        mode: "deny_all",
        allow_cidrs: ["1.1.1.1/32", "1.0.0.1/32"],
        allow_ports: [443],
        deny_cidrs: ["10.0.0.0/8"],
      },
    });
    expect(res.status).toBe(201);
    const s = res.body;
    expect(s).toMatchObject({
      template: "base",
      mode: "ephemeral",
      status: "running",
      size: "shared-cpu-2x",
      vcpus: 2,
      memory_mb: 2048,
      timeout_seconds: 600,
      idle_timeout_seconds: null,
      metadata: { team: "agents" },
      egress: {
        mode: "deny_all",
        allow_cidrs: ["1.1.1.1/32", "1.0.0.1/32"],
        deny_cidrs: ["10.0.0.0/8"],
        allow_ports: [443],
      },
      destroyed_at: null,
    });
    expect(s.id).toMatch(/^sbx_/);
    for (const t of [s.created_at, s.started_at, s.expires_at]) expect(t).toMatch(ISO);
    expect(Date.parse(s.expires_at!) - before).toBeGreaterThan(590_000);
    expect(Date.parse(s.expires_at!) - Date.now()).toBeLessThanOrEqual(600_000);
    // The same sandbox through Sandpit's own API: an ephemeral, destroy-at-timeout sandbox with the policy.
    expect(await native(s.id)).toMatchObject({
      lifecycle: "ephemeral",
      timeoutAction: "destroy",
      autoResume: false,
      resources: { vcpus: 2, memoryMb: 2048 },
      networkPolicy: {
        mode: "custom",
        allow: { cidrs: ["1.1.1.1/32", "1.0.0.1/32"], ports: [443] },
        deny: { cidrs: ["10.0.0.0/8"] },
      },
    });

    // Get, and the organisation rule: 403 for another organisation, 404 for no such sandbox.
    const got = await zwrm<ZwrmSandbox>("GET", `/v1/sandboxes/${s.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(s);
    expectError(await zwrm("GET", `/v1/sandboxes/${s.id}`, { key: intruderKey }), 403);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { key: intruderKey, body: { command: "id" } }), 403);
    expectError(await zwrm("GET", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa"), 404);

    // Exec: stdout, stderr, exit code, duration; workdir and env; the 5-minute bound; a timeout.
    const ran = await zwrm<ZwrmExec>("POST", `/v1/sandboxes/${s.id}/exec`, {
      body: { command: 'echo "$GREETING $EXTRA"; pwd; echo oops >&2; exit 3', workdir: "/tmp", env: { EXTRA: "+1" } },
    });
    expect(ran.status).toBe(200);
    expect(ran.body).toMatchObject({
      stdout: "hello from zwrm +1\n/tmp\n",
      stderr: "oops\n",
      exit_code: 3,
      timed_out: false,
    });
    expect(ran.body.duration_ms).toBeGreaterThanOrEqual(0);
    const slow = await zwrm<ZwrmExec>("POST", `/v1/sandboxes/${s.id}/exec`, {
      body: { command: "sleep 30", timeout: "1s" },
    });
    expect(slow.status).toBe(200);
    expect(slow.body.timed_out).toBe(true);
    expect(slow.body.exit_code).not.toBe(0);
    expect(slow.body.duration_ms).toBeLessThan(10_000);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: {} }), 400, "command");
    expectError(
      await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "ls", timeout: "6m" } }),
      400,
      "timeout",
    );
    expectError(
      await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "ls", timeout: "fast" } }),
      400,
      "timeout",
    );
    expect(
      (await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "true", timeout: "5m" } })).status,
    ).toBe(200);

    // Upload and download: raw bytes at a path; the path rules; 404 for a missing file; the 100 MB bound.
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
    const put = await zwrm("POST", `/v1/sandboxes/${s.id}/upload?path=/data/nested/blob.bin`, { raw: bytes });
    expect(put.status).toBe(204);
    expect(put.bytes.length).toBe(0);
    const got2 = await zwrm("GET", `/v1/sandboxes/${s.id}/download?path=/data/nested/blob.bin`);
    expect(got2.status).toBe(200);
    expect(got2.headers.get("content-type")).toBe("application/octet-stream");
    expect(got2.bytes.equals(bytes)).toBe(true);
    const inside = await zwrm<ZwrmExec>("POST", `/v1/sandboxes/${s.id}/exec`, {
      body: { command: "wc -c < /data/nested/blob.bin" },
    });
    expect(inside.body.stdout.trim()).toBe("70000");
    for (const path of ["/", "//", "/data/../etc/passwd", "relative.txt", ""]) {
      expectError(
        await zwrm("POST", `/v1/sandboxes/${s.id}/upload?path=${encodeURIComponent(path)}`, { raw: Buffer.from("x") }),
        400,
        "path",
      );
    }
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/upload`, { raw: Buffer.from("x") }), 400, "path");
    expectError(await zwrm("GET", `/v1/sandboxes/${s.id}/download?path=/data/none.txt`), 404);
    expectError(await zwrm("GET", `/v1/sandboxes/${s.id}/download?path=/data/../etc/passwd`), 400, "path");
    const tooBig = await declaredUpload(s.id, 100 * 1024 * 1024 + 1);
    expect(tooBig.status).toBe(400);
    expect((tooBig.body as ZwrmError).error).toMatch(/104857600/);

    // Keepalive: a new timeout from now, clamped to 24h.
    const kept = await zwrm<ZwrmSandbox>("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "30m" } });
    expect(kept.status).toBe(200);
    expect(kept.body.timeout_seconds).toBe(1800);
    expect(Math.abs(Date.parse(kept.body.expires_at!) - (Date.now() + 1_800_000))).toBeLessThan(10_000);
    const clamped = await zwrm<ZwrmSandbox>("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "48h" } });
    expect(clamped.status).toBe(200);
    expect(clamped.body.timeout_seconds).toBe(86_400);
    expectError(
      await zwrm("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "eventually" } }),
      400,
      "timeout",
    );

    // Wake on a running sandbox: 200, it was already running.
    const awake = await zwrm<ZwrmSandbox>("POST", `/v1/sandboxes/${s.id}/wake`);
    expect(awake.status).toBe(200);
    expect(awake.body.status).toBe("running");

    // List: the caller's non-destroyed sandboxes, filtered by status.
    const listed = await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes");
    expect(listed.body.sandboxes.map((x) => x.id)).toEqual([s.id]);
    expect(
      (await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes?status=running")).body.sandboxes,
    ).toHaveLength(1);
    expect((await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes?status=suspended")).body.sandboxes).toEqual(
      [],
    );
    expect(
      (await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes", { key: intruderKey })).body.sandboxes,
    ).toEqual([]);
    expectError(await zwrm("GET", "/v1/sandboxes?status=sleeping"), 400, "status");

    // Destroy: 204, idempotent; afterwards everything that needs a running sandbox is a 409.
    const destroyed = await zwrm("DELETE", `/v1/sandboxes/${s.id}`);
    expect(destroyed.status).toBe(204);
    expect(destroyed.bytes.length).toBe(0);
    expect((await zwrm("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
    expectError(await zwrm("DELETE", `/v1/sandboxes/${s.id}`, { key: intruderKey }), 403);
    expectError(await zwrm("DELETE", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa"), 404);
    const gone = await zwrm<ZwrmSandbox>("GET", `/v1/sandboxes/${s.id}`);
    expect(gone.body.status).toBe("destroyed");
    expect(gone.body.destroyed_at).toMatch(ISO);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "5m" } }), 409);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/wake`), 409);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "true" } }), 409);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/upload?path=/x`, { raw: Buffer.from("x") }), 409);
    expectError(await zwrm("GET", `/v1/sandboxes/${s.id}/download?path=/x`), 409);
    expect((await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes")).body.sandboxes).toEqual([]);
    const destroyedList = await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes?status=destroyed");
    expect(destroyedList.body.sandboxes.map((x) => x.id)).toEqual([s.id]);
  });

  it("suspends a persistent sandbox after its idle timeout and wakes it on wake or on the next call", async () => {
    const res = await create({ template: "base", mode: "persistent", idle_timeout: "3s" });
    expect(res.status).toBe(201);
    const s = res.body;
    expect(s).toMatchObject({
      mode: "persistent",
      status: "running",
      size: "shared-cpu-1x",
      vcpus: 1,
      memory_mb: 1024,
      timeout_seconds: null,
      idle_timeout_seconds: 3,
      expires_at: null,
      egress: { mode: "allow_all" },
    });
    expect(await native(s.id)).toMatchObject({
      lifecycle: "persistent",
      idleTimeoutMs: 3000,
      autoResume: true,
      expiresAt: null,
    });
    // A file written before the suspend is still there after the wake: the state is kept.
    await zwrm("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "echo kept > /tmp/state" } });
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "5m" } }), 409);

    const suspended = () =>
      waitFor(
        async () => {
          const got = await zwrm<ZwrmSandbox>("GET", `/v1/sandboxes/${s.id}`);
          return got.body.status === "suspended" && (await native(s.id)).status === "paused" ? got.body : undefined;
        },
        60_000,
        "the idle suspend",
      );
    expect((await suspended()).status).toBe("suspended");
    const filtered = await zwrm<{ sandboxes: ZwrmSandbox[] }>("GET", "/v1/sandboxes?status=suspended");
    expect(filtered.body.sandboxes.map((x) => x.id)).toEqual([s.id]);
    expectError(await zwrm("POST", `/v1/sandboxes/${s.id}/keepalive`, { body: { timeout: "5m" } }), 409);

    const woken = await zwrm<ZwrmSandbox>("POST", `/v1/sandboxes/${s.id}/wake`);
    expect(woken.status).toBe(200);
    expect(woken.body.status).toBe("running");
    const read = await zwrm<ZwrmExec>("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "cat /tmp/state" } });
    expect(read.body.stdout).toBe("kept\n");

    // Suspended again: an exec wakes it by itself.
    await suspended();
    const auto = await zwrm<ZwrmExec>("POST", `/v1/sandboxes/${s.id}/exec`, { body: { command: "cat /tmp/state" } });
    expect(auto.status).toBe(200);
    expect(auto.body.stdout).toBe("kept\n");
    expect((await zwrm("DELETE", `/v1/sandboxes/${s.id}`)).status).toBe(204);
  });
});

/** An upload that declares its length (as curl --data-binary does) without sending the bytes. */
function declaredUpload(id: string, length: number): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${server.url}/zwrm/v1/sandboxes/${id}/upload?path=/big.bin`,
      {
        method: "POST",
        headers: {
          Authorization: `Bearer ${server.apiKey}`,
          "Content-Type": "application/octet-stream",
          "Content-Length": String(length),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => {
          text += c.toString();
        });
        res.on("end", () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        });
      },
    );
    req.on("error", (e) => (e.message.includes("socket hang up") ? undefined : reject(e)));
    req.write(Buffer.alloc(1024));
  });
}
