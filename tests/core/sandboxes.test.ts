import { Sandbox } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;

beforeAll(async () => {
  server = await startTestServer();
  api = apiClient(server);
  sandbox = await api.createSandbox({
    resources: { vcpus: 1, memoryMb: 512 },
    env: { GREETING: "hello" },
    metadata: { team: "core", run: "a" },
    timeoutMs: 600_000,
  });
});

afterAll(async () => {
  await server?.close();
});

describe("sandbox lifecycle over the native API", () => {
  it("creates a running sandbox with a fixed-length id, Location and X-Request-ID", async () => {
    expect(sandbox.id).toMatch(/^sbx_[a-z2-7]{20}$/);
    expect(sandbox.status).toBe("running");
    expect(sandbox.template).toBe("base");
    expect(sandbox.resources).toEqual({ vcpus: 1, memoryMb: 512, diskMb: 4096 });
    // the request's variables plus those pointing HTTP clients at the trust bundle with the egress CA
    expect(sandbox.envKeys).toEqual([
      "CURL_CA_BUNDLE",
      "GREETING",
      "NODE_EXTRA_CA_CERTS",
      "REQUESTS_CA_BUNDLE",
      "SSL_CERT_FILE",
    ]);
    expect(JSON.stringify(sandbox)).not.toContain("hello");
    expect(sandbox.cwd).toBe("/workspace");
    expect(Date.parse(sandbox.expiresAt!) - Date.parse(sandbox.startedAt!)).toBe(600_000);

    const res = await api.post("/v1/sandboxes", { metadata: { team: "other" } }, { "x-request-id": "my-trace-1" });
    expect(res.status).toBe(201);
    expect(res.headers.get("location")).toBe(`/v1/sandboxes/${(res.body as { id: string }).id}`);
    expect(res.headers.get("x-request-id")).toBe("my-trace-1");
    expect((await api.get("/v1/sandboxes")).headers.get("x-request-id")).toMatch(/^req_/);
  });

  it("runs the sandbox under gVisor with the host's processes and files invisible", async () => {
    const dmesg = await api.exec(sandbox.id, { command: "dmesg | head -1; uname -r" });
    expect(dmesg.stdout).toContain("gVisor");
    const ps = await api.exec(sandbox.id, {
      command: "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/1/cmdline | tr '\\0' ' '",
    });
    const [count, init] = ps.stdout.trim().split("\n");
    expect(Number(count)).toBeLessThan(10);
    expect(init).toContain("sandpit-agent");
    const hostFile = await api.exec(sandbox.id, { command: `test -e ${serverEntry} && echo visible || echo hidden` });
    expect(hostFile.stdout.trim()).toBe("hidden");
    const mem = await api.exec(sandbox.id, { command: "head -1 /proc/meminfo; nproc" });
    expect(mem.stdout).toContain(`${512 * 1024} kB`);
  });

  it("gives the sandbox its environment and working directory", async () => {
    const r = await api.exec(sandbox.id, { command: 'echo "$GREETING from $(pwd)"' });
    expect(r.stdout).toBe("hello from /workspace\n");
  });

  it("gets, lists and filters by status and metadata", async () => {
    const got = await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
    expect(got.status).toBe(200);
    expect(got.body.id).toBe(sandbox.id);
    const byMeta = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.team=core");
    expect(byMeta.body.sandboxes.map((s) => s.id)).toEqual([sandbox.id]);
    const byTwo = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.team=core&metadata.run=b");
    expect(byTwo.body.sandboxes).toEqual([]);
    const byStatus = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?status=running");
    expect(byStatus.body.sandboxes.length).toBeGreaterThanOrEqual(2);
    const badStatus = await api.get<ErrorBody>("/v1/sandboxes?status=sleeping");
    expect(badStatus.status).toBe(400);
    expect(badStatus.body.error.details?.fields?.[0]?.field).toBe("status");
  });

  it("changes metadata after create: sets, replaces and removes keys, and the list filter sees it", async () => {
    const target = await api.createSandbox({ metadata: { team: "meta", stage: "draft", gone: "soon" } });
    const res = await api.call<SandboxBody>("PATCH", `/v1/sandboxes/${target.id}`, {
      metadata: { stage: "review", owner: "ci", gone: null, absent: null },
    });
    expect(res.status).toBe(200);
    expect(res.body.metadata).toEqual({ team: "meta", stage: "review", owner: "ci" });
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${target.id}`)).body.metadata).toEqual(res.body.metadata);
    const byNew = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.stage=review");
    expect(byNew.body.sandboxes.map((s) => s.id)).toEqual([target.id]);
    expect((await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.gone=soon")).body.sandboxes).toEqual(
      [],
    );
    // An empty patch changes nothing.
    const same = await api.call<SandboxBody>("PATCH", `/v1/sandboxes/${target.id}`, { metadata: {} });
    expect(same.body.metadata).toEqual(res.body.metadata);
    // The SDK's setMetadata sends the same patch and returns the updated sandbox.
    const viaSdk = await Sandbox.get(target.id, { apiUrl: server.url, apiKey: server.apiKey });
    const info = await viaSdk.setMetadata({ owner: null, stage: "approved" });
    expect(info.metadata).toEqual({ team: "meta", stage: "approved" });
    expect(viaSdk.metadata).toEqual(info.metadata);

    // A destroyed sandbox keeps its last metadata.
    await api.del(`/v1/sandboxes/${target.id}`);
    const late = await api.call<ErrorBody>("PATCH", `/v1/sandboxes/${target.id}`, { metadata: { stage: "done" } });
    expect(late.status).toBe(409);
    expect(late.body.error.code).toBe("invalid_state");
  });

  it("extends the expiry with a keepalive", async () => {
    const before = Date.now();
    const res = await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/timeout`, { timeoutMs: 3_600_000 });
    expect(res.status).toBe(200);
    const expires = Date.parse(res.body.expiresAt!);
    expect(expires).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
  });

  it("destroys idempotently and keeps showing the destroyed sandbox", async () => {
    const victim = await api.createSandbox({ metadata: { team: "victim" } });
    expect((await api.del(`/v1/sandboxes/${victim.id}`)).status).toBe(204);
    expect((await api.del(`/v1/sandboxes/${victim.id}`)).status).toBe(204);
    const got = await api.get<SandboxBody>(`/v1/sandboxes/${victim.id}`);
    expect(got.body.status).toBe("destroyed");
    expect(got.body.destroyedAt).not.toBeNull();
    const listed = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.team=victim");
    expect(listed.body.sandboxes).toEqual([]);
    const withDestroyed = await api.get<{ sandboxes: SandboxBody[] }>(
      "/v1/sandboxes?metadata.team=victim&includeDestroyed=true",
    );
    expect(withDestroyed.body.sandboxes.map((s) => s.id)).toEqual([victim.id]);
    const exec = await api.post<ErrorBody>(`/v1/sandboxes/${victim.id}/exec`, { command: "true" });
    expect(exec.status).toBe(409);
    expect(exec.body.error.code).toBe("invalid_state");
    expect(exec.body.error.message).toContain("destroyed");
  });
});

describe("validation", () => {
  it("rejects bad create requests naming each field and rule", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", {
      resources: { vcpus: 99, memoryMb: 300 },
      timeoutMs: 999_999_999,
      env: { "1BAD": "x" },
      surprise: true,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    const fields = res.body.error.details!.fields!.map((f) => f.field).sort();
    expect(fields).toEqual(expect.arrayContaining(["resources.vcpus", "resources.memoryMb", "timeoutMs", "env.1BAD"]));
    expect(res.body.error.details!.fields!.find((f) => f.field === "resources.vcpus")!.rule).toBe("too_big");
    expect(res.body.error.message).toContain("resources.vcpus");
  });

  it("rejects bad metadata changes naming the field and rule", async () => {
    const path = `/v1/sandboxes/${sandbox.id}`;
    const empty = await api.call<ErrorBody>("PATCH", path, {});
    expect(empty.status).toBe(400);
    expect(empty.body.error.details!.fields![0]).toMatchObject({ field: "metadata", rule: "custom" });
    const long = await api.call<ErrorBody>("PATCH", path, { metadata: { team: "x".repeat(1025) } });
    expect(long.status).toBe(400);
    expect(long.body.error.details!.fields![0]).toMatchObject({ field: "metadata.team", rule: "too_big" });
    const number = await api.call<ErrorBody>("PATCH", path, { metadata: { team: 7 } });
    expect(number.body.error.details!.fields![0]).toMatchObject({ field: "metadata.team", rule: "invalid_type" });
    const unknown = await api.call<ErrorBody>("PATCH", path, { env: { A: "1" } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain("env");
    // 63 new keys next to the 2 there are make 65: over the limit once merged.
    const many = Object.fromEntries(Array.from({ length: 63 }, (_, i) => [`k${i}`, "v"]));
    const full = await api.call<ErrorBody>("PATCH", path, { metadata: many });
    expect(full.status).toBe(400);
    expect(full.body.error.details!.fields![0]).toMatchObject({ field: "metadata", rule: "too_big" });
    expect(full.body.error.message).toContain("at most 64 entries");
    expect((await api.get<SandboxBody>(path)).body.metadata).toEqual({ team: "core", run: "a" });
  });

  it("rejects an unknown template with 404", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", { template: "nope" });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("template_not_found");
  });

  it("rejects malformed JSON and exec without a command", async () => {
    const res = await fetch(`${server.url}/v1/sandboxes`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: "{not json",
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("bad_request");
    const exec = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/exec`, {});
    expect(exec.status).toBe(400);
    expect(exec.body.error.details!.fields![0]!.field).toBe("command");
  });
});

describe("tenants", () => {
  it("requires a valid API key", async () => {
    expect((await apiClient(server, null).get("/v1/sandboxes")).status).toBe(401);
    const wrong = await apiClient(server, "sp_wrong").get<ErrorBody>("/v1/sandboxes");
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("unauthorized");
  });

  it("hides one organisation's sandboxes from another exactly like missing ones", async () => {
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "other-org" });
    const intruder = apiClient(server, other.key);
    const missing = await intruder.get<ErrorBody>("/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa");
    const foreign = await intruder.get<ErrorBody>(`/v1/sandboxes/${sandbox.id}`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe(missing.body.error.code);
    expect(foreign.body.error.message.replace(sandbox.id, "ID")).toBe(
      missing.body.error.message.replace("sbx_aaaaaaaaaaaaaaaaaaaa", "ID"),
    );
    expect((await intruder.get<{ sandboxes: unknown[] }>("/v1/sandboxes")).body.sandboxes).toEqual([]);
    expect((await intruder.post(`/v1/sandboxes/${sandbox.id}/exec`, { command: "true" })).status).toBe(404);
    expect((await intruder.get(`/v1/sandboxes/${sandbox.id}/files?path=/etc/hostname`)).status).toBe(404);
    expect((await intruder.del(`/v1/sandboxes/${sandbox.id}`)).status).toBe(404);
    const patch = await intruder.call<ErrorBody>("PATCH", `/v1/sandboxes/${sandbox.id}`, { metadata: { run: "x" } });
    expect(patch.status).toBe(404);
    expect(patch.body.error.code).toBe(missing.body.error.code);
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`)).body.metadata).toEqual({
      team: "core",
      run: "a",
    });
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`)).body.status).toBe("running");
  });
});

describe("conventions", () => {
  it("serves an OpenAPI document generated from the schemas", async () => {
    const res = await apiClient(server, null).get<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      "/v1/openapi.json",
    );
    expect(res.status).toBe(200);
    expect(res.body.openapi).toMatch(/^3\./);
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining(["/v1/sandboxes", "/v1/sandboxes/{id}/exec", "/v1/sandboxes/{id}/files", "/v1/templates"]),
    );
    const create = res.body.paths["/v1/sandboxes"]!.post as {
      requestBody: { content: Record<string, { schema: { properties: Record<string, unknown> } }> };
    };
    expect(Object.keys(create.requestBody.content["application/json"]!.schema.properties)).toEqual(
      expect.arrayContaining(["template", "resources", "timeoutMs", "env", "metadata", "cwd"]),
    );
  });

  it("lists templates with their build state", async () => {
    const res = await api.get<{ templates: { name: string; status: string; sizeBytes: number }[] }>("/v1/templates");
    const base = res.body.templates.find((t) => t.name === "base")!;
    expect(base.status).toBe("ready");
    expect(base.sizeBytes).toBeGreaterThan(50_000_000);
    const versions = await api.exec(sandbox.id, {
      command: "python3 --version; node --version; git --version; curl --version | head -1",
    });
    expect(versions.stdout).toMatch(/Python 3\.13/);
    expect(versions.stdout).toMatch(/^v\d+/m);
  });

  it("answers unknown routes with the error shape", async () => {
    const res = await api.get<ErrorBody>("/v1/nothing-here");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
  });
});
