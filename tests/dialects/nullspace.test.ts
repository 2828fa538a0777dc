import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { type FakeInternet, startFakeInternet } from "../helpers/fake-internet.js";
import { serverEntry } from "../helpers/paths.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Nullspace's create, error and status shapes as its document describes them. */
interface NullspaceSandbox {
  id: string;
  status: "creating" | "running" | "paused" | "destroyed" | "error";
  config: { vcpus: number; memory_mb: number; disk_mb: number };
  template: string;
  created_at: string;
  metadata?: Record<string, unknown>;
  started_at?: string;
  timeout_ms?: number;
  timeout_at?: string;
  expires_at?: string;
  timeout_action?: "destroy" | "hibernate";
  cwd?: string;
  traffic_access_token?: string;
  warm_pool_checkout?: { hit: boolean; id: string };
}
interface NullspaceError {
  error: { code: string; message: string; status: number; request_id: string; fields?: { field: string }[] };
}

const ADMIN_KEY = "nullspace-admin-key-0123456789";
const POOL = { id: "ns-small", template: "base", size: 1, vcpus: 1, memoryMb: 256, diskMb: 2048 };
const FAKE_NET = 73;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let admin: ReturnType<typeof apiClient>;
let net: FakeInternet;

beforeAll(async () => {
  net = await startFakeInternet(FAKE_NET);
  server = await startTestServer({
    SANDPIT_DNS_UPSTREAM: net.ip.dns,
    SANDPIT_ADMIN_KEY: ADMIN_KEY,
    SANDPIT_WARM_POOLS: JSON.stringify([POOL]),
  });
  api = apiClient(server);
  admin = apiClient(server, ADMIN_KEY);
});

afterAll(async () => {
  // Pooled sandboxes belong to the pool, not to the test's organisation: remove the pool first.
  await admin?.del(`/v1/admin/warm-pools/${POOL.id}`);
  await server?.close();
  await net?.close();
});

/** A request exactly as Nullspace's document shows it: Bearer key, Idempotency-Key, a JSON body. */
async function nullspace<T>(
  method: string,
  path: string,
  options: {
    body?: unknown;
    key?: string | null;
    idempotencyKey?: string | null;
    headers?: Record<string, string>;
  } = {},
): Promise<{ status: number; headers: Headers; body: T }> {
  const headers: Record<string, string> = { ...options.headers };
  const key = options.key === undefined ? server.apiKey : options.key;
  if (key !== null) headers.Authorization = `Bearer ${key}`;
  if (options.idempotencyKey !== null && method === "POST") {
    headers["Idempotency-Key"] = options.idempotencyKey ?? randomUUID();
  }
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${server.url}/nullspace${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as T };
}

const create = (body: unknown, idempotencyKey?: string) =>
  nullspace<NullspaceSandbox>("POST", "/v1/sandboxes", { body, ...(idempotencyKey ? { idempotencyKey } : {}) });

async function created(body: unknown): Promise<NullspaceSandbox> {
  const res = await create(body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const destroy = (id: string) => nullspace("DELETE", `/v1/sandboxes/${id}`);
const nativeCount = async (filter: string) =>
  (await api.get<{ sandboxes: SandboxBody[] }>(`/v1/sandboxes?${filter}`)).body.sandboxes.length;

function expectError(res: { status: number; body: unknown }, status: number, code: string, field?: string) {
  const body = res.body as NullspaceError;
  expect(res.status).toBe(status);
  expect(body.error.code).toBe(code);
  expect(body.error.status).toBe(status);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.request_id).toMatch(/\S/);
  if (field) expect(body.error.fields?.map((f) => f.field)).toContain(field);
}

describe("Nullspace dialect", () => {
  it("creates a sandbox from the documented request with every documented default and field", async () => {
    const before = Date.now();
    const res = await create({});
    expect(res.status).toBe(201);
    const s = res.body;
    expect(s.id).toMatch(/^sbx_/);
    expect(res.headers.get("location")).toBe(`/nullspace/v1/sandboxes/${s.id}`);
    expect(s.status).toBe("running");
    expect(s.config).toEqual({ vcpus: 1, memory_mb: 256, disk_mb: 4096 });
    expect(s.template).toBe("base");
    for (const t of [s.created_at, s.started_at, s.timeout_at, s.expires_at]) expect(t).toMatch(ISO);
    expect(Date.parse(s.created_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(s.metadata).toEqual({});
    expect(s.timeout_ms).toBe(300_000);
    expect(Date.parse(s.timeout_at!) - Date.parse(s.started_at!)).toBe(300_000);
    expect(s.expires_at).toBe(s.timeout_at);
    expect(s.timeout_action).toBe("destroy");
    expect(s.cwd).toBe("/workspace");
    expect(s.traffic_access_token).toMatch(/\S{16,}/);
    // No pool matches 256 MiB and 4096 MiB, so create did not consider one.
    expect(s.warm_pool_checkout).toBeUndefined();

    const got = await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${s.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: s.id, status: "running", config: s.config, timeout_at: s.timeout_at });
    expect(got.body.traffic_access_token).toBeUndefined();
    expect((await destroy(s.id)).status).toBe(204);
    expect((await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${s.id}`)).body.status).toBe("destroyed");
    expectError(await nullspace("GET", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa"), 404, "not_found");
  });

  it("applies template, sizing, envs, metadata, cwd and timeout to the real sandbox", async () => {
    const metadata = { team: "ml", run: 7, tags: ["a", "b"], nested: { ok: true, none: null } };
    const s = await created({
      template: "base",
      vcpus: 2,
      memory_mb: 300,
      disk_mb: 1024,
      timeout_ms: 120_000,
      envs: { GREETING: "hello" },
      metadata,
      cwd: "/srv//app/./src/..",
    });
    expect(s.config).toEqual({ vcpus: 2, memory_mb: 512, disk_mb: 1024 });
    expect(s.metadata).toEqual(metadata);
    expect(s.cwd).toBe("/srv/app");
    expect(s.timeout_ms).toBe(120_000);
    expect(Date.parse(s.timeout_at!) - Date.parse(s.started_at!)).toBe(120_000);
    const r = await api.exec(s.id, {
      command: 'echo "$GREETING $(pwd) $(nproc)"; df -m / | tail -1 | awk "{print \\$2}"',
    });
    expect(r.stdout.split("\n")[0]).toBe("hello /srv/app 2");
    const diskMb = Number(r.stdout.split("\n")[1]);
    expect(diskMb).toBeGreaterThan(800);
    expect(diskMb).toBeLessThan(1100);
    expect((await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${s.id}`)).body.metadata).toEqual(metadata);
    // A null cwd is the same as none: the template's default.
    const defaults = await created({ cwd: null });
    expect(defaults.cwd).toBe("/workspace");
    await destroy(s.id);
    await destroy(defaults.id);
  });

  it("requires an Idempotency-Key, replays a retry without a second sandbox, and refuses another body", async () => {
    const body = { metadata: { idem: "nullspace-one" } };
    const missing = await nullspace("POST", "/v1/sandboxes", { body, idempotencyKey: null });
    expectError(missing, 400, "idempotency_key_required", "Idempotency-Key");
    expect(await nativeCount("metadata.idem=nullspace-one")).toBe(0);

    const key = randomUUID();
    const first = await create(body, key);
    expect(first.status).toBe(201);
    const retries = await Promise.all([create(body, key), create(body, key)]);
    for (const retry of retries) {
      expect(retry.status).toBe(201);
      expect(retry.body).toEqual(first.body);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
    }
    expect(await nativeCount("metadata.idem=nullspace-one")).toBe(1);

    const other = await create({ metadata: { idem: "nullspace-two" } }, key);
    expectError(other, 409, "idempotency_key_conflict");
    expect(await nativeCount("metadata.idem=nullspace-two")).toBe(0);

    // Concurrent first requests with one key make one sandbox too.
    const key2 = randomUUID();
    const racing = await Promise.all([1, 2, 3].map(() => create({ metadata: { idem: "nullspace-race" } }, key2)));
    expect(new Set(racing.map((r) => r.body.id)).size).toBe(1);
    expect(await nativeCount("metadata.idem=nullspace-race")).toBe(1);

    // A request that failed validation leaves its key free for the corrected request.
    const key3 = randomUUID();
    expectError(await create({ vcpus: 0 }, key3), 400, "invalid_request", "vcpus");
    const fixed = await create({ vcpus: 1, metadata: { idem: "nullspace-fixed" } }, key3);
    expect(fixed.status).toBe(201);
    expect(fixed.headers.get("idempotent-replayed")).toBeNull();
    for (const id of [first.body.id, racing[0]!.body.id, fixed.body.id]) await destroy(id);
  });

  it("validates every documented bound and rule, in Nullspace's error shape", async () => {
    const cases: [unknown, string][] = [
      [{ vcpus: 0 }, "vcpus"],
      [{ vcpus: 1.5 }, "vcpus"],
      [{ vcpus: 9 }, "vcpus"],
      [{ memory_mb: 0 }, "memory_mb"],
      [{ memory_mb: 20_000 }, "memory_mb"],
      [{ disk_mb: 511 }, "disk_mb"],
      [{ disk_mb: 131_073 }, "disk_mb"],
      [{ snapshot_id: "snp_aaaaaaaaaaaaaaaaaaaa", disk_mb: 1024 }, "disk_mb"],
      [{ timeout_ms: 10 }, "timeout_ms"],
      [{ timeout_action: "sleep" }, "timeout_action"],
      [{ auto_resume: true }, "auto_resume"],
      [{ auto_resume: true, timeout_action: "destroy" }, "auto_resume"],
      [{ timeout_action: "destroy", lifecycle: { on_timeout: "pause" } }, "lifecycle.on_timeout"],
      [{ cwd: "workspace" }, "cwd"],
      [{ cwd: "/../etc" }, "cwd"],
      [{ cwd: "/workspace/.nullspace" }, "cwd"],
      [{ cwd: "/workspace/.nullspace/run" }, "cwd"],
      [{ warm_pool: { mode: "prefer" } }, "warm_pool.id"],
      [{ warm_pool: { mode: "require" } }, "warm_pool.id"],
      [{ warm_pool: { mode: "sometimes", id: "x" } }, "warm_pool.mode"],
      [{ volumes: Array.from({ length: 9 }, (_, i) => ({ ref: `v${i}`, mount_path: `/mnt/${i}` })) }, "volumes"],
      [{ volumes: [{ ref: "data" }] }, "volumes.0.mount_path"],
      [{ volumes: [{ ref: "data", mount_path: "/mnt/data", path: "/mnt/data" }] }, "volumes.0"],
      [{ volumes: [{ ref: "data", mount_path: "/workspace/.nullspace/data" }] }, "volumes.0.mount_path"],
      [{ volumes: [{ ref: "data", mount_path: "mnt/data" }] }, "volumes.0.mount_path"],
      [{ volumes: [{ ref: "data", mount_path: "/mnt/data", read_only: "yes" }] }, "volumes.0.read_only"],
      [{ metadata: { volume_attachments: [] } }, "metadata.volume_attachments"],
      [{ envs: { A: 1 } }, "envs.A"],
      [{ metadata: "x" }, "metadata"],
      [{ internet_access: "no" }, "internet_access"],
      [{ network: { allow_public_traffic: "yes" } }, "network.allow_public_traffic"],
      [{ unknown_field: 1 }, "(body)"],
    ];
    for (const [body, field] of cases) {
      const res = await create(body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expectError(res, 400, "invalid_request", field);
    }
    expectError(await nullspace("POST", "/v1/sandboxes", { body: {}, key: null }), 401, "unauthorized");
    expectError(await nullspace("POST", "/v1/sandboxes", { body: {}, key: "sp_wrong" }), 401, "unauthorized");
    expectError(await create({ template: "no-such-template" }), 404, "not_found");
    expectError(await create({ snapshot_id: "snp_aaaaaaaaaaaaaaaaaaaa" }), 404, "not_found");
    // The desktop object is Sandpit's {width, height, dpi}: anything else is named.
    expectError(await create({ desktop: { resolution: "1024x768" } }), 400, "invalid_request", "desktop");
    // An explicit empty or null volume list is no volume at all.
    const plain = await created({ volumes: null, desktop: null });
    await destroy(plain.id);
  });

  it("hibernates on timeout and auto-resumes through the proxy with the traffic access token", async () => {
    const s = await created({
      timeout_ms: 4000,
      timeout_action: "hibernate",
      auto_resume: true,
      network: { allow_public_traffic: false },
    });
    expect(s.timeout_action).toBe("hibernate");
    const asleep = await created({ timeout_ms: 3000, lifecycle: { on_timeout: "pause" } });
    expect(asleep.timeout_action).toBe("hibernate");
    // The server holds a value only in memory: it answers the same after a resume only if memory survived.
    const script =
      "import http.server,secrets\nv=secrets.token_hex(8).encode()\nclass H(http.server.BaseHTTPRequestHandler):\n def do_GET(s):\n  s.send_response(200);s.send_header('content-length',str(len(v)));s.end_headers();s.wfile.write(v)\nhttp.server.HTTPServer(('0.0.0.0',8000),H).serve_forever()";
    await api.post(`/v1/sandboxes/${s.id}/exec`, { args: ["python3", "-c", script], background: true });
    const proxyUrl = `/v1/sandboxes/${s.id}/proxy/8000/`;
    const token = { [`x-nullspace-traffic-access-token`]: s.traffic_access_token! };
    const value = await waitFor(async () => {
      const r = await fetch(`${server.url}/nullspace${proxyUrl}`, { headers: token });
      return r.status === 200 ? await r.text() : undefined;
    }, 10_000);
    expect(value).toMatch(/^[0-9a-f]{16}$/);
    expectError(await nullspace("GET", proxyUrl, { key: null }), 401, "unauthorized");
    expectError(
      await nullspace("GET", proxyUrl, { key: null, headers: { "x-nullspace-traffic-access-token": "wrong" } }),
      403,
      "forbidden",
    );

    for (const id of [s.id, asleep.id]) {
      await waitFor(
        async () =>
          (await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${id}`)).body.status === "paused" ? true : undefined,
        30_000,
        "hibernation",
      );
    }
    const paused = (await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${s.id}`)).body;
    expect(paused.timeout_at).toBeUndefined();
    expect(paused.expires_at).toBeUndefined();

    const resumed = await fetch(`${server.url}/nullspace${proxyUrl}`, { headers: token });
    expect(resumed.status).toBe(200);
    expect(await resumed.text()).toBe(value);
    const running = (await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${s.id}`)).body;
    expect(running.status).toBe("running");
    expect(running.timeout_at).toMatch(ISO);

    // Without auto_resume a hibernated sandbox stays asleep and says so.
    const refused = await api.post<{ error: { code: string } }>(`/v1/sandboxes/${asleep.id}/exec`, { command: "true" });
    expect(refused.status).toBe(409);
    expect((await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${asleep.id}`)).body.status).toBe("paused");
    await destroy(s.id);
    await destroy(asleep.id);
  });

  it("auto-resumes a call that arrives while the sandbox is still hibernating", async () => {
    const s = await created({ timeout_ms: 2000, timeout_action: "hibernate", auto_resume: true });
    await api.exec(s.id, { command: "echo before > /tmp/mark" });
    let seen = "running";
    while (seen === "running") {
      seen = (await api.get<SandboxBody>(`/v1/sandboxes/${s.id}`)).body.status;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(["pausing", "paused"]).toContain(seen);
    const r = await api.exec(s.id, { command: "cat /tmp/mark" });
    expect(r.stdout).toBe("before\n");
    process.stderr.write(`[nullspace] call arrived while the sandbox was ${seen}\n`);
    await destroy(s.id);
  });

  it("proxies public traffic without a token by default", async () => {
    const s = await created({ timeout_ms: 60_000 });
    await api.post(`/v1/sandboxes/${s.id}/exec`, {
      command: "mkdir -p /tmp/www && echo public > /tmp/www/index.html && cd /tmp/www && python3 -m http.server 8001",
      background: true,
    });
    const text = await waitFor(async () => {
      const r = await fetch(`${server.url}/nullspace/v1/sandboxes/${s.id}/proxy/8001/index.html`);
      return r.status === 200 ? await r.text() : undefined;
    }, 10_000);
    expect(text).toBe("public\n");
    await destroy(s.id);
  });

  it("internet_access: false cuts the sandbox off the (fake) internet; the default reaches it", async () => {
    const open = await created({});
    const closed = await created({ internet_access: false });
    const code = async (id: string) =>
      (
        await api.exec(id, { command: `curl -s -o /dev/null -m 3 -w '%{http_code}' http://${net.ip.web}/ || true` })
      ).stdout.trim();
    expect(await code(open.id)).toBe("200");
    expect(await code(closed.id)).toBe("000");
    const dns = await api.exec(closed.id, { command: "getent hosts web.test || true" });
    expect(dns.stdout.trim()).toBe("");
    await destroy(open.id);
    await destroy(closed.id);
  });

  it("restores a reusable snapshot into fresh sandboxes, one per idempotency key", async () => {
    const source = await created({ vcpus: 2, memory_mb: 512, envs: { FROM: "snapshot" } });
    await api.exec(source.id, { command: "echo kept > /workspace/state.txt" });
    const snap = await api.post<{ id: string; status: string }>(`/v1/sandboxes/${source.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    await waitFor(async () => {
      const got = await api.get<{ status: string }>(`/v1/snapshots/${snap.body.id}`);
      return got.body.status === "ready" ? true : undefined;
    }, 60_000);
    const key = randomUUID();
    const child = await create({ snapshot_id: snap.body.id, metadata: { from: "snap" } }, key);
    expect(child.status).toBe(201);
    expect(child.body.config).toEqual({ vcpus: 2, memory_mb: 512, disk_mb: source.config.disk_mb });
    const replay = await create({ snapshot_id: snap.body.id, metadata: { from: "snap" } }, key);
    expect(replay.body.id).toBe(child.body.id);
    const second = await create({ snapshot_id: snap.body.id, metadata: { from: "snap" }, cwd: "/srv/child" });
    expect(second.status).toBe(201);
    expect(second.body.id).not.toBe(child.body.id);
    expect(child.body.cwd).toBe("/workspace");
    expect(second.body.cwd).toBe("/srv/child");
    expect((await api.exec(second.body.id, { command: "pwd" })).stdout).toBe("/srv/child\n");
    expect(await nativeCount("metadata.from=snap")).toBe(2);
    for (const id of [child.body.id, second.body.id]) {
      const r = await api.exec(id, { command: 'cat /workspace/state.txt; echo "$FROM"' });
      expect(r.stdout).toBe("kept\nsnapshot\n");
    }
    for (const id of [source.id, child.body.id, second.body.id]) await destroy(id);
  });

  it("mounts shared volumes by name or id, in request order, and remounts them in snapshot children", async () => {
    const made = await Promise.all(
      ["ns-shared", "ns-models"].map((name) =>
        api.post<{ id: string; name: string }>("/v1/volumes", { name, sizeMb: 64 }),
      ),
    );
    for (const v of made) expect(v.status).toBe(201);
    const [shared, models] = made.map((v) => v.body) as [{ id: string; name: string }, { id: string; name: string }];
    const writer = await created({
      volumes: [
        { ref: "ns-shared", mount_path: "/workspace/shared" },
        { ref: models.id, mount_path: "/models", subpath: "/published-models" },
      ],
    });
    const attachments = [
      {
        id: `${writer.id}.volumes.0`,
        volume_id: shared.id,
        volume_name: "ns-shared",
        mount_path: "/workspace/shared",
        subpath: "/",
        read_only: false,
        state: "mounted",
      },
      {
        id: `${writer.id}.volumes.1`,
        volume_id: models.id,
        volume_name: "ns-models",
        mount_path: "/models",
        subpath: "/published-models",
        read_only: false,
        state: "mounted",
      },
    ];
    expect(writer.metadata).toEqual({ volume_attachments: attachments });
    expect((await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${writer.id}`)).body.metadata).toEqual({
      volume_attachments: attachments,
    });

    // A second sandbox mounts the same volumes (by id, read-only; the models volume at its root).
    const reader = await created({
      metadata: { role: "reader" },
      volumes: [
        { ref: shared.id, mount_path: "/data", read_only: true },
        { ref: "ns-models", mount_path: "/all-models", subpath: null },
      ],
    });
    expect(reader.metadata?.role).toBe("reader");
    const readerAttachments = (reader.metadata?.volume_attachments ?? []) as {
      volume_name: string;
      mount_path: string;
      read_only: boolean;
    }[];
    expect(readerAttachments.map((a) => [a.volume_name, a.mount_path, a.read_only])).toEqual([
      ["ns-shared", "/data", true],
      ["ns-models", "/all-models", false],
    ]);
    const wrote = await api.exec(writer.id, {
      command: "echo hello from writer > /workspace/shared/hello.txt && echo weights > /models/m.bin",
    });
    expect(wrote.exitCode).toBe(0);
    const read = await api.exec(reader.id, { command: "cat /data/hello.txt /all-models/published-models/m.bin" });
    expect(read.stdout).toBe("hello from writer\nweights\n");
    const refused = await api.exec(reader.id, { command: "echo x > /data/x.txt" });
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/read-only/i);

    // A snapshot's children get the same mounts, live (not a copy of the files).
    const snap = await api.post<{ id: string }>(`/v1/sandboxes/${writer.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    await waitFor(async () => {
      const got = await api.get<{ status: string }>(`/v1/snapshots/${snap.body.id}`);
      return got.body.status === "ready" ? true : undefined;
    }, 60_000);
    const child = await created({ snapshot_id: snap.body.id });
    expect(child.metadata).toEqual({
      volume_attachments: attachments.map((a, i) => ({ ...a, id: `${child.id}.volumes.${i}` })),
    });
    await api.exec(reader.id, { command: "echo after the snapshot > /all-models/published-models/late.txt" });
    const inChild = await api.exec(child.id, { command: "cat /workspace/shared/hello.txt /models/late.txt" });
    expect(inChild.stdout).toBe("hello from writer\nafter the snapshot\n");
    // A snapshot's children mount the snapshot's volumes and no others.
    expectError(
      await create({ snapshot_id: snap.body.id, volumes: [{ ref: "ns-shared", mount_path: "/x" }] }),
      400,
      "invalid_request",
      "volumes",
    );

    // Unknown refs — a name, an id, another organisation's volume — are 404s naming the field.
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const { key: otherKey } = await createApiKey({ dataDir: server.dataDir, org: "nullspace-other-org" });
    const other = apiClient(server, otherKey);
    const foreign = await other.post<{ id: string }>("/v1/volumes", { name: "ns-shared", sizeMb: 64 });
    expect(foreign.status).toBe(201);
    for (const ref of ["no-such-volume", "vol_aaaaaaaaaaaaaaaaaaaa", foreign.body.id]) {
      const res = await create({
        volumes: [
          { ref: "ns-shared", mount_path: "/ok" },
          { ref, mount_path: "/m" },
        ],
      });
      expectError(res, 404, "not_found", "volumes.1.ref");
    }
    // Rules Sandpit checks name Nullspace's fields too.
    expectError(
      await create({ volumes: [{ ref: "ns-shared", mount_path: "/m", subpath: "/../etc" }] }),
      400,
      "invalid_request",
      "volumes.0.subpath",
    );
    expectError(
      await create({ volumes: [{ ref: "ns-shared", mount_path: "/proc/x" }] }),
      400,
      "invalid_request",
      "volumes.0.mount_path",
    );

    // Mounted volumes cannot be deleted; once every sandbox is gone they can, with their files.
    expect((await api.del("/v1/volumes/ns-shared")).status).toBe(409);
    for (const id of [writer.id, reader.id, child.id]) await destroy(id);
    await api.del(`/v1/snapshots/${snap.body.id}`);
    for (const name of ["ns-shared", "ns-models"]) expect((await api.del(`/v1/volumes/${name}`)).status).toBe(204);
    expect((await other.del("/v1/volumes/ns-shared")).status).toBe(204);
  });

  it("checks out a named warm pool, bypasses it on request, and requires a ready one", async () => {
    const ready = async () =>
      (await admin.get<{ pools: { id: string; ready: number }[] }>("/v1/admin/warm-pools")).body.pools.find(
        (p) => p.id === POOL.id,
      )?.ready ?? 0;
    await waitFor(async () => ((await ready()) >= 1 ? true : undefined), 90_000, "the pool to fill");
    const hit = await create({
      warm_pool: { mode: "require", id: POOL.id },
      envs: { POOLED: "yes" },
      cwd: "/srv/pool",
    });
    expect(hit.status).toBe(201);
    expect(hit.body.warm_pool_checkout).toEqual({ hit: true, id: POOL.id });
    expect(hit.body.config).toEqual({ vcpus: 1, memory_mb: 256, disk_mb: 2048 });
    expect(hit.body.traffic_access_token).toMatch(/\S{16,}/);
    const r = await api.exec(hit.body.id, { command: 'echo "$POOLED $(pwd)"' });
    expect(r.stdout).toBe("yes /srv/pool\n");

    const bypass = await create({ warm_pool: { mode: "bypass" }, vcpus: 1, memory_mb: 256, disk_mb: 2048 });
    expect(bypass.status).toBe(201);
    expect(bypass.body.warm_pool_checkout).toBeUndefined();

    expectError(await create({ warm_pool: { mode: "require", id: "no-such-pool" } }), 404, "not_found");
    // prefer falls back to a cold create when the pool is empty, and says which pool it considered.
    const prefer = await create({ warm_pool: { mode: "prefer", id: POOL.id } });
    expect(prefer.status).toBe(201);
    expect(prefer.body.warm_pool_checkout?.id).toBe(POOL.id);
    expect(typeof prefer.body.warm_pool_checkout?.hit).toBe("boolean");
    for (const id of [hit.body.id, bypass.body.id, prefer.body.id]) await destroy(id);
  });
});
