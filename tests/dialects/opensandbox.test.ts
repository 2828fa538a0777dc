// The official `@alibaba-group/opensandbox` SDK, configured only by OPEN_SANDBOX_DOMAIN and
// OPEN_SANDBOX_API_KEY, against Sandpit's OpenSandbox dialect; plus raw HTTP checks of the documented shapes.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { Sandbox, SandboxApiException, SandboxManager, type Sandbox as SandboxType } from "@alibaba-group/opensandbox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxLayer, layerTree, pushImage, startRegistry, type TestRegistry } from "../helpers/registry.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

/** Host directories the server may mount (host volumes), and where test images are built. */
const work = mkdtempSync("/var/tmp/sandpit-opensandbox-test-");

let server: TestServer;
useTestServer(
  (s) => {
    server = s;
  },
  // Images come from a registry on loopback; host volumes only from this test's directory.
  { SANDPIT_OUTBOUND_ALLOWED_HOSTS: "127.0.0.1", SANDPIT_HOST_VOLUME_PATHS: work },
);

const saved = { ...process.env };
const created: SandboxType[] = [];

beforeAll(() => {
  process.env.OPEN_SANDBOX_DOMAIN = `${new URL(server.url).host}/opensandbox`;
  process.env.OPEN_SANDBOX_API_KEY = server.apiKey;
});

afterAll(async () => {
  await Promise.all(created.map((s) => s.kill().catch(() => undefined)));
  await Promise.all(created.map((s) => s.close().catch(() => undefined)));
  process.env = saved;
  rmSync(work, { recursive: true, force: true });
});

async function newSandbox(opts: Partial<Parameters<typeof Sandbox.create>[0]> = {}) {
  const sandbox = await Sandbox.create({ image: "python:3.13", timeoutSeconds: 300, ...opts });
  created.push(sandbox);
  return sandbox;
}

/** The fields these tests read from OpenSandbox's JSON answers (a sandbox, an endpoint or an error). */
interface Wire {
  id: string;
  status: { state: string };
  image?: { uri: string };
  metadata: Record<string, string>;
  entrypoint: string[];
  expiresAt: string;
  createdAt: string;
  endpoint: string;
  headers: Record<string, string>;
  code: string;
  message: string;
}

/** A raw request to the dialect, the way curl would send it. */
async function raw(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}/opensandbox${path}`, {
    method,
    headers: {
      "OPEN-SANDBOX-API-KEY": server.apiKey,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  return {
    status: res.status,
    headers: res.headers,
    body: (type.includes("json") ? JSON.parse(text) : { message: text }) as Wire,
  };
}

describe("OpenSandbox SDK", () => {
  it("creates a sandbox from python:3.13 with env and metadata, and reads it back", async () => {
    const sandbox = await newSandbox({ env: { GREETING: "hello" }, metadata: { suite: "opensandbox" } });
    expect(sandbox.id).toMatch(/^sbx_/);
    const info = await sandbox.getInfo();
    expect(info.status.state).toBe("Running");
    expect(info.metadata).toEqual({ suite: "opensandbox" });
    expect(info.entrypoint).toEqual(["tail", "-f", "/dev/null"]);
    expect((info as unknown as { image: { uri: string } }).image.uri).toBe("python:3.13");
    expect(info.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 200_000);
    expect(await sandbox.isHealthy()).toBe(true);
    const version = await sandbox.commands.run("python3 --version; echo $GREETING");
    expect(version.exitCode).toBe(0);
    expect(version.logs.stdout.map((m) => m.text).join("")).toMatch(/^Python 3\.13\.\d+\nhello\n$/);
    // The entrypoint runs as the sandbox's main process.
    const ps = await sandbox.commands.run("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done");
    expect(ps.logs.stdout.map((m) => m.text).join("")).toContain("tail -f /dev/null");
  });

  it("runs a command with streamed output and its exit code", async () => {
    const sandbox = await newSandbox({ image: "base" });
    const seen: string[] = [];
    const started: string[] = [];
    const result = await sandbox.commands.run(
      "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2; exit 3",
      { workingDirectory: "/tmp", envs: { X: "1" } },
      {
        onInit: (init) => void started.push(init.id),
        onStdout: (m) => void seen.push(`${Date.now()}:${m.text}`),
      },
    );
    expect(started[0]).toMatch(/^cmd_/);
    expect(result.id).toBe(started[0]);
    expect(result.exitCode).toBe(3);
    expect(result.error?.value).toBe("3");
    expect(result.logs.stdout.map((m) => m.text).join("")).toBe("line 1\nline 2\nline 3\n");
    expect(result.logs.stderr.map((m) => m.text).join("")).toBe("oops\n");
    // Streamed: the lines arrived apart, not in one piece at the end.
    const times = seen.map((s) => Number(s.split(":")[0]));
    expect(times.at(-1)! - times[0]!).toBeGreaterThan(400);

    const ok = await sandbox.commands.run("pwd; echo $X", { workingDirectory: "/tmp", envs: { X: "42" } });
    expect(ok.exitCode).toBe(0);
    expect(ok.complete).toBeDefined();
    expect(ok.logs.stdout.map((m) => m.text).join("")).toBe("/tmp\n42\n");

    const status = await sandbox.commands.getCommandStatus(result.id!);
    expect(status).toMatchObject({ running: false, exitCode: 3, content: expect.stringContaining("exit 3") });
  });

  it("runs background commands with status, logs and interrupt", async () => {
    const sandbox = await newSandbox({ image: "base" });
    const bg = await sandbox.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done", { background: true });
    expect(bg.id).toMatch(/^cmd_/);
    for (let i = 0; i < 50; i++) {
      const s = await sandbox.commands.getCommandStatus(bg.id!);
      if (!s.running) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const status = await sandbox.commands.getCommandStatus(bg.id!);
    expect(status).toMatchObject({ running: false, exitCode: 0 });
    expect(status.finishedAt).toBeInstanceOf(Date);
    const logs = await sandbox.commands.getBackgroundCommandLogs(bg.id!);
    expect(logs.content).toBe("tick 1\ntick 2\ntick 3\n");
    expect(logs.cursor).toBe(3);
    const tail = await sandbox.commands.getBackgroundCommandLogs(bg.id!, 2);
    expect(tail.content).toBe("tick 3\n");

    const sleeper = await sandbox.commands.run("sleep 600", { background: true });
    expect((await sandbox.commands.getCommandStatus(sleeper.id!)).running).toBe(true);
    await sandbox.commands.interrupt(sleeper.id!);
    for (let i = 0; i < 50 && (await sandbox.commands.getCommandStatus(sleeper.id!)).running; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const stopped = await sandbox.commands.getCommandStatus(sleeper.id!);
    expect(stopped.running).toBe(false);
    expect(stopped.error).toBe("killed by a signal");
  });

  it("writes, reads, inspects and lists files and directories", async () => {
    const sandbox = await newSandbox({ image: "base" });
    await sandbox.files.writeFiles([
      { path: "/data/notes/a.txt", data: "alpha\nbeta\n", mode: 640 },
      { path: "/data/bin.dat", data: new Uint8Array([0, 1, 2, 250, 255]) },
    ]);
    expect(await sandbox.files.readFile("/data/notes/a.txt")).toBe("alpha\nbeta\n");
    expect(Array.from(await sandbox.files.readBytes("/data/bin.dat"))).toEqual([0, 1, 2, 250, 255]);
    expect(await sandbox.files.readFile("/data/notes/a.txt", { range: "bytes=6-9" })).toBe("beta");
    // Written into the sandbox for real: a command sees the same bytes.
    const cat = await sandbox.commands.run("cat /data/notes/a.txt; stat -c %a /data/notes/a.txt");
    expect(cat.logs.stdout.map((m) => m.text).join("")).toBe("alpha\nbeta\n640\n");

    const info = await sandbox.files.getFileInfo(["/data/notes/a.txt"]);
    expect(info["/data/notes/a.txt"]).toMatchObject({
      type: "file",
      size: 11,
      mode: 640,
      owner: "root",
      group: "root",
    });
    expect(info["/data/notes/a.txt"]!.modifiedAt).toBeInstanceOf(Date);

    await sandbox.files.createDirectories([{ path: "/data/made/deep", mode: 700 }]);
    const listing = await sandbox.files.listDirectory({ path: "/data", depth: 2 });
    expect(listing.map((e) => [e.path, e.type])).toEqual([
      ["/data/bin.dat", "file"],
      ["/data/made", "directory"],
      ["/data/made/deep", "directory"],
      ["/data/notes", "directory"],
      ["/data/notes/a.txt", "file"],
    ]);
    expect(listing.find((e) => e.path === "/data/made/deep")?.mode).toBe(700);

    const found = await sandbox.files.search({ path: "/data", pattern: "*.txt" });
    expect(found.map((f) => f.path)).toEqual(["/data/notes/a.txt"]);
    await sandbox.files.replaceContents([{ path: "/data/notes/a.txt", oldContent: "beta", newContent: "gamma" }]);
    await sandbox.files.moveFiles([{ src: "/data/notes/a.txt", dest: "/data/b.txt" }]);
    expect(await sandbox.files.readFile("/data/b.txt")).toBe("alpha\ngamma\n");
    await sandbox.files.deleteFiles(["/data/b.txt"]);
    await sandbox.files.deleteDirectories(["/data/made"]);
    expect((await sandbox.files.listDirectory({ path: "/data" })).map((e) => e.path)).toEqual([
      "/data/bin.dat",
      "/data/notes",
    ]);
    const missing = await sandbox.files.readFile("/data/nope.txt").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(SandboxApiException);
    expect((missing as SandboxApiException).statusCode).toBe(404);
  });

  it("pauses and resumes with processes and files kept, renews the expiry, and kills", async () => {
    const sandbox = await newSandbox({ image: "base" });
    await sandbox.files.writeFiles([{ path: "/root/state.txt", data: "kept" }]);
    const bg = await sandbox.commands.run("sleep 600", { background: true });
    await sandbox.pause();
    expect((await sandbox.getInfo()).status.state).toBe("Paused");
    const resumed = await sandbox.resume();
    created.push(resumed);
    expect((await resumed.getInfo()).status.state).toBe("Running");
    expect(await resumed.files.readFile("/root/state.txt")).toBe("kept");
    expect((await resumed.commands.getCommandStatus(bg.id!)).running).toBe(true);

    const renewed = await resumed.renew(3600);
    const expiresAt = new Date(renewed.expiresAt as unknown as string).getTime();
    expect(Math.abs(expiresAt - (Date.now() + 3_600_000))).toBeLessThan(10_000);
    expect((await resumed.getInfo()).expiresAt!.getTime()).toBe(expiresAt);

    await resumed.kill();
    const gone = await raw("GET", `/v1/sandboxes/${sandbox.id}`);
    expect(gone.body.status.state).toBe("Terminated");
    const again = await resumed.kill().catch((e: unknown) => e);
    expect((again as SandboxApiException).statusCode).toBe(404);
  });

  it("lists sandboxes by state and metadata, and reads and patches the egress policy", async () => {
    const sandbox = await newSandbox({
      image: "base",
      metadata: { team: "blue" },
      networkPolicy: { defaultAction: "deny", egress: [{ action: "allow", target: "pypi.org" }] },
    });
    const manager = SandboxManager.create();
    const listed = await manager.listSandboxInfos({ states: ["Running"], metadata: { team: "blue" } });
    expect(listed.items.map((s) => s.id)).toEqual([sandbox.id]);
    expect(listed.pagination).toMatchObject({ page: 1, totalItems: 1, hasNextPage: false });
    const none = await manager.listSandboxInfos({ states: ["Paused"], metadata: { team: "blue" } });
    expect(none.items).toEqual([]);
    await manager.close();

    expect(await sandbox.getEgressPolicy()).toEqual({
      defaultAction: "deny",
      egress: [{ action: "allow", target: "pypi.org" }],
    });
    await sandbox.patchEgressRules([{ action: "allow", target: "*.example.com" }]);
    expect((await sandbox.getEgressPolicy()).egress).toEqual([
      { action: "allow", target: "*.example.com" },
      { action: "allow", target: "pypi.org" },
    ]);
    await sandbox.deleteEgressRules(["pypi.org"]);
    expect((await sandbox.getEgressPolicy()).egress).toEqual([{ action: "allow", target: "*.example.com" }]);
    // Applied to the sandbox's real policy.
    const native = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}`, {
      headers: { authorization: `Bearer ${server.apiKey}` },
    }).then((r) => r.json() as Promise<{ networkPolicy: unknown }>);
    expect(native.networkPolicy).toMatchObject({ mode: "custom", allow: { domains: ["*.example.com"] } });
  });

  it("patches metadata as a JSON merge patch, and the list filter sees the change", async () => {
    const sandbox = await newSandbox({ image: "base", metadata: { team: "green", stage: "draft" } });
    const info = await sandbox.patchMetadata({ stage: "review", owner: "ci", team: null });
    expect(info.id).toBe(sandbox.id);
    expect(info.metadata).toEqual({ stage: "review", owner: "ci" });
    expect((await sandbox.getInfo()).metadata).toEqual({ stage: "review", owner: "ci" });
    const manager = SandboxManager.create();
    const listed = await manager.listSandboxInfos({ metadata: { owner: "ci", stage: "review" } });
    expect(listed.items.map((s) => s.id)).toEqual([sandbox.id]);
    expect((await manager.listSandboxInfos({ metadata: { team: "green" } })).items).toEqual([]);
    await manager.close();

    // Over raw HTTP: {} is a no-op answering the sandbox; reserved keys and bad values are refused by key.
    const same = await raw("PATCH", `/v1/sandboxes/${sandbox.id}/metadata`, {});
    expect(same.status).toBe(200);
    expect(same.body.metadata).toEqual({ stage: "review", owner: "ci" });
    const reserved = await raw("PATCH", `/v1/sandboxes/${sandbox.id}/metadata`, { "opensandbox.io/image": "x" });
    expect(reserved.status).toBe(400);
    expect(reserved.body).toEqual({
      code: "SANDBOX::INVALID_PARAMETER",
      message: expect.stringContaining("opensandbox.io/image"),
    });
    const long = await raw("PATCH", `/v1/sandboxes/${sandbox.id}/metadata`, { owner: "x".repeat(1025) });
    expect(long.status).toBe(400);
    expect(long.body.message).toMatch(/owner/);
    const unknown = await raw("PATCH", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/metadata", { owner: "x" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe("SANDBOX::SANDBOX_NOT_FOUND");

    await sandbox.kill();
    const gone = await sandbox.patchMetadata({ owner: "late" }).catch((e: unknown) => e);
    expect((gone as SandboxApiException).statusCode).toBe(404);
  });
});

describe("OpenSandbox SDK: snapshots and metrics", () => {
  it("snapshots a sandbox and restores a new one from it with the manager and Sandbox.create", async () => {
    const source = await newSandbox({ image: "base" });
    await source.files.writeFiles([{ path: "/root/snap.txt", data: "from the snapshot" }]);
    const manager = SandboxManager.create();
    try {
      const snapshot = await manager.createSnapshot(source.id, { name: "before-import" });
      expect(snapshot).toMatchObject({ sandboxId: source.id, name: "before-import", status: { state: "Ready" } });
      expect((await manager.getSnapshot(snapshot.id)).id).toBe(snapshot.id);
      const listed = await manager.listSnapshots({ sandboxId: source.id });
      expect(listed.items.map((s) => s.id)).toEqual([snapshot.id]);

      const child = await Sandbox.create({ snapshotId: snapshot.id, timeoutSeconds: 300 });
      created.push(child);
      expect(await child.files.readFile("/root/snap.txt")).toBe("from the snapshot");
      const info = (await child.getInfo()) as unknown as { snapshotId?: string; image?: unknown };
      expect(info.snapshotId).toBe(snapshot.id);
      expect(info.image).toBeUndefined();
      await manager.deleteSnapshot(snapshot.id);
      const gone = await manager.getSnapshot(snapshot.id).catch((e: unknown) => e);
      expect((gone as SandboxApiException).statusCode).toBe(404);
    } finally {
      await manager.close();
    }
  });

  it("reports CPU and memory from inside the sandbox", async () => {
    const sandbox = await newSandbox({ image: "base", resource: { cpu: "2", memory: "1Gi" } });
    const metrics = await sandbox.getMetrics();
    expect(metrics.cpuCount).toBe(2);
    expect(metrics.memoryTotalMiB).toBeGreaterThan(500);
    expect(metrics.memoryUsedMiB).toBeGreaterThan(0);
    expect(metrics.memoryUsedMiB).toBeLessThan(metrics.memoryTotalMiB);
    expect(metrics.cpuUsedPercentage).toBeGreaterThanOrEqual(0);
    expect(Math.abs(metrics.timestamp - Date.now())).toBeLessThan(10_000);
  });
});

describe("OpenSandbox SDK: images and volumes", () => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
    const layer = busyboxLayer(work);
    const app = layerTree(work, { "app/hello.txt": "from the image\n" });
    await pushImage(registry, "test/tiny", "1", [layer, app], { User: "app", WorkingDir: "/app", Env: ["FROM=image"] });
  }, 120_000);
  afterAll(async () => {
    await registry?.close();
  });

  it("pulls an image that is not a template and drives execd in it (sh, its user, its files)", async () => {
    const uri = `${registry.host}/test/tiny:1`;
    const sandbox = await newSandbox({ image: uri, entrypoint: ["sleep", "3600"] });
    expect(((await sandbox.getInfo()) as unknown as { image: { uri: string } }).image.uri).toBe(uri);
    const run = await sandbox.commands.run("cat hello.txt; echo $FROM; id -un; pwd");
    expect(run.exitCode).toBe(0);
    expect(run.logs.stdout.map((m) => m.text).join("")).toBe("from the image\nimage\napp\n/app\n");
    // Uploads belong to the image's user, so its commands can change them.
    await sandbox.files.writeFiles([{ path: "notes.txt", data: "mine" }]);
    const info = await sandbox.files.getFileInfo(["/app/notes.txt"]);
    expect(info["/app/notes.txt"]).toMatchObject({ owner: "app", group: "app", size: 4 });

    const missing = await raw("POST", "/v1/sandboxes", {
      image: { uri: `${registry.host}/test/absent:1` },
      timeout: 60,
      entrypoint: ["sleep", "60"],
    });
    expect(missing.status).toBeGreaterThanOrEqual(400);
    expect(Object.keys(missing.body).sort()).toEqual(["code", "message"]);
    expect(missing.body.code).toMatch(/^SANDBOX::/);
    expect(missing.body.message).toContain("test/absent");
  });

  it("mounts named volumes (made on first use) and host directories", async () => {
    const first = await newSandbox({
      image: "base",
      volumes: [{ name: "data", mountPath: "/mnt/data", pvc: { claimName: "os-shared", storage: "128Mi" } }],
    });
    await first.commands.run("echo kept-across-sandboxes > /mnt/data/f.txt");
    await first.kill();
    const volume = await fetch(`${server.url}/v1/volumes/os-shared`, {
      headers: { authorization: `Bearer ${server.apiKey}` },
    }).then((r) => r.json() as Promise<{ sizeMb: number }>);
    expect(volume.sizeMb).toBe(128);

    writeFileSync(path.join(work, "host.txt"), "from the host\n");
    const second = await newSandbox({
      image: "base",
      volumes: [
        { name: "data", mountPath: "/mnt/data", readOnly: true, pvc: { claimName: "os-shared" } },
        { name: "host", mountPath: "/mnt/host", host: { path: work } },
      ],
    });
    expect(await second.files.readFile("/mnt/data/f.txt")).toBe("kept-across-sandboxes\n");
    expect(await second.files.readFile("/mnt/host/host.txt")).toBe("from the host\n");
    const readOnly = await second.commands.run("echo x > /mnt/data/g.txt");
    expect(readOnly.exitCode).not.toBe(0);

    const ossfs = await raw("POST", "/v1/sandboxes", {
      image: { uri: "base" },
      timeout: 60,
      entrypoint: ["sleep", "1"],
      volumes: [
        { name: "o", mountPath: "/o", ossfs: { bucket: "b", endpoint: "e", accessKeyId: "k", accessKeySecret: "s" } },
      ],
    });
    expect(ossfs.status).toBe(501);
    expect(ossfs.body.code).toBe("SANDBOX::API_NOT_SUPPORTED");
    expect(ossfs.body.message).toMatch(/OSSFS/);
    const outside = await raw("POST", "/v1/sandboxes", {
      image: { uri: "base" },
      timeout: 60,
      entrypoint: ["sleep", "1"],
      volumes: [{ name: "etc", mountPath: "/h", host: { path: "/etc" } }],
    });
    expect(outside.status).toBe(403);
    expect(outside.body).toEqual({ code: "SANDBOX::FORBIDDEN", message: expect.stringContaining("/etc") });
  });
});

describe("OpenSandbox SDK: README promises (ready-to-use endpoints, non-expiring sandboxes, unsupported APIs)", () => {
  it("getEndpointUrl(port) answers as returned and with a path appended, with no header sent", async () => {
    const sandbox = await newSandbox();
    await sandbox.commands.run(
      "mkdir -p /tmp/site/sub && echo root > /tmp/site/index.html && echo deep > /tmp/site/sub/a.txt",
    );
    await sandbox.commands.run("cd /tmp/site && python3 -m http.server 8000", { background: true });
    const url = await sandbox.getEndpointUrl(8000);
    expect(url).toMatch(/^http:\/\//);
    const deadline = Date.now() + 20_000;
    let first = await fetch(url);
    while (first.status !== 200 && Date.now() < deadline) {
      await first.body?.cancel();
      await new Promise((r) => setTimeout(r, 100));
      first = await fetch(url);
    }
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("root\n");
    const deep = await fetch(`${url}/sub/a.txt?x=1`);
    expect(deep.status).toBe(200);
    expect(await deep.text()).toBe("deep\n");
    // The token in the URL is the sandbox's own: another token in its place is refused.
    const forged = await fetch(url.replace(/sandpit_token\/[^/]+/, "sandpit_token/wrong"));
    expect(forged.status).toBe(403);
    await sandbox.kill();
  });

  it("creates a non-expiring sandbox with timeoutSeconds: null (no expiresAt; renew refused)", async () => {
    const manual = await Sandbox.create({ image: "ubuntu", timeoutSeconds: null });
    created.push(manual);
    const info = await manual.getInfo();
    expect(info.status.state).toBe("Running");
    expect(info.expiresAt ?? null).toBeNull();
    const native = await fetch(`${server.url}/v1/sandboxes/${manual.id}`, {
      headers: { authorization: `Bearer ${server.apiKey}` },
    }).then((r) => r.json() as Promise<Record<string, unknown>>);
    expect(native).toMatchObject({ lifecycle: "persistent", expiresAt: null, autoResume: true });
    expect((await manual.commands.run("echo alive")).logs.stdout.map((m) => m.text).join("")).toBe("alive\n");
    const renew = await manual.renew(600).catch((e: unknown) => e);
    expect(renew).toBeInstanceOf(SandboxApiException);
    expect((renew as SandboxApiException).statusCode).toBe(409);
    expect((renew as SandboxApiException).error.code).toBe("SANDBOX::INVALID_STATE");
    await manual.kill();
  });

  it("answers isolation.capabilities and unknown execd paths with NOT_SUPPORTED, never No route", async () => {
    const sandbox = await newSandbox({ image: "base" });
    // The SDK's isolation client throws a plain Error carrying the status and the body.
    const caps = await sandbox.isolation.capabilities().catch((e: unknown) => e);
    expect(caps).toBeInstanceOf(Error);
    expect((caps as Error).message).toMatch(/failed: 501 .*"code":"NOT_SUPPORTED".*isolated sessions/);

    const { endpoint, headers } = await sandbox.getEndpoint(44772);
    for (const [method, path] of [
      ["GET", "/v1/isolated/sessions"],
      ["POST", "/v1/isolated/session"],
      ["GET", "/no/such/api"],
      ["DELETE", "/ping"],
    ] as const) {
      const res = await fetch(`http://${endpoint}${path}`, { method, headers });
      expect(res.status).toBe(501);
      const body = (await res.json()) as Wire;
      expect(Object.keys(body).sort()).toEqual(["code", "message"]);
      expect(body.code).toBe("NOT_SUPPORTED");
      expect(body.message).not.toMatch(/No route/);
    }
    const egress = await sandbox.getEndpoint(18080);
    const unknownEgress = await fetch(`http://${egress.endpoint}/nothing`, { headers: egress.headers });
    expect(unknownEgress.status).toBe(501);
    expect(((await unknownEgress.json()) as Wire).code).toBe("NOT_SUPPORTED");
    await sandbox.kill();
  });
});

describe("OpenSandbox lifecycle API over raw HTTP", () => {
  it("answers create with 202, Pending/Running, X-Request-ID and Location, and GET with the image", async () => {
    const res = await raw("POST", "/v1/sandboxes", {
      image: { uri: "node:24" },
      timeout: 120,
      resourceLimits: { cpu: "500m", memory: "512Mi" },
      entrypoint: ["sleep", "infinity"],
      env: { A: "1" },
      metadata: { name: "raw" },
      networkPolicy: { defaultAction: "allow", egress: [{ action: "deny", target: "bad.example.com" }] },
    });
    expect(res.status).toBe(202);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const id = res.body.id;
    expect(res.headers.get("location")).toBe(`${server.url}/opensandbox/v1/sandboxes/${id}`);
    expect(["Pending", "Running"]).toContain(res.body.status.state);
    expect(res.body).toMatchObject({ metadata: { name: "raw" }, entrypoint: ["sleep", "infinity"] });
    expect(res.body.image).toBeUndefined();
    expect(Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt)).toBeGreaterThan(100_000);
    try {
      const got = await raw("GET", `/v1/sandboxes/${id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id, image: { uri: "node:24" }, status: { state: "Running" } });
      const native = await fetch(`${server.url}/v1/sandboxes/${id}`, {
        headers: { authorization: `Bearer ${server.apiKey}` },
      }).then((r) => r.json() as Promise<Record<string, unknown>>);
      expect(native).toMatchObject({
        template: "node24",
        resources: { vcpus: 1, memoryMb: 512 },
        networkPolicy: { mode: "custom", deny: { domains: ["bad.example.com"] } },
      });
      const endpoint = await raw("GET", `/v1/sandboxes/${id}/endpoints/44772`);
      expect(endpoint.body.endpoint).toBe(`${new URL(server.url).host}/opensandbox/execd/${id}`);
      expect(endpoint.body.headers["X-EXECD-ACCESS-TOKEN"]).toBeTruthy();
      // The execd token alone (no API key) reaches the sandbox; a wrong one does not.
      const ping = await fetch(`http://${endpoint.body.endpoint}/ping`, { headers: endpoint.body.headers });
      expect(ping.status).toBe(200);
      const wrong = await fetch(`http://${endpoint.body.endpoint}/ping`, { headers: { "X-EXECD-ACCESS-TOKEN": "x" } });
      expect(wrong.status).toBe(401);
      expect(await wrong.json()).toMatchObject({ code: "UNAUTHORIZED" });
    } finally {
      expect((await raw("DELETE", `/v1/sandboxes/${id}`)).status).toBe(204);
    }
  });

  it("answers validation errors, unknown sandboxes and bad keys in OpenSandbox's error shape", async () => {
    const invalid = await raw("POST", "/v1/sandboxes", {
      image: { uri: "base" },
      timeout: 10,
      resourceLimits: { cpu: "lots" },
      entrypoint: [],
    });
    expect(invalid.status).toBe(400);
    expect(Object.keys(invalid.body).sort()).toEqual(["code", "message"]);
    expect(invalid.body.code).toBe("SANDBOX::INVALID_PARAMETER");
    expect(invalid.body.message).toMatch(/timeout/);
    expect(invalid.body.message).toMatch(/entrypoint/);

    const resources = await raw("POST", "/v1/sandboxes", {
      image: { uri: "base" },
      timeout: 60,
      resourceLimits: { cpu: "lots", gpu: "1" },
      entrypoint: ["sleep", "1"],
    });
    expect(resources.status).toBe(400);
    expect(resources.body.message).toMatch(/resourceLimits\.cpu/);
    expect(resources.body.message).toMatch(/resourceLimits\.gpu/);

    const unsupported = await raw("POST", "/v1/sandboxes", {
      image: { uri: "base" },
      timeout: 60,
      entrypoint: ["sleep", "1"],
      credentialProxy: { enabled: true },
    });
    expect(unsupported.status).toBe(501);
    expect(unsupported.body.code).toBe("SANDBOX::API_NOT_SUPPORTED");

    const unknown = await raw("GET", "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa");
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ code: "SANDBOX::SANDBOX_NOT_FOUND", message: expect.any(String) });

    const wrongKey = await raw("GET", "/v1/sandboxes", undefined, { "OPEN-SANDBOX-API-KEY": "sp_wrong" });
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.body.code).toBe("INVALID_API_KEY");
    const noKey = await fetch(`${server.url}/opensandbox/v1/sandboxes`);
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as { code: string }).code).toBe("MISSING_API_KEY");

    const sessions = await raw("GET", `/v1/sandboxes/${created[0]!.id}/endpoints/44772`);
    const session = await fetch(`http://${sessions.body.endpoint}/session`, {
      method: "POST",
      headers: { ...sessions.body.headers, "content-type": "application/json" },
      body: "{}",
    });
    // Bash sessions are Sandpit's bash code contexts (tests/dialects/opensandbox-code.test.ts drives them).
    expect(session.status).toBe(200);
    const { session_id } = (await session.json()) as { session_id: string };
    const ended = await fetch(`http://${sessions.body.endpoint}/session/${session_id}`, {
      method: "DELETE",
      headers: sessions.body.headers,
    });
    expect(ended.status).toBe(200);

    const sdkError = await Sandbox.connect({ sandboxId: "sbx_aaaaaaaaaaaaaaaaaaaa", skipHealthCheck: true })
      .then((s) => s.getInfo())
      .catch((e: unknown) => e);
    expect(sdkError).toBeInstanceOf(SandboxApiException);
    expect((sdkError as SandboxApiException).statusCode).toBe(404);
  });

  /** The states of the sandboxes tagged orphan=`tag`, polled until there is one and it is Terminated (or 20 s). */
  async function statesOfOrphans(tag: string): Promise<string[]> {
    let states: string[] = [];
    for (let i = 0; i < 100; i++) {
      const listed = await raw(
        "GET",
        `/v1/sandboxes?state=Pending&state=Running&state=Stopping&state=Terminated&metadata=${encodeURIComponent(`orphan=${tag}`)}`,
      );
      states = (listed.body as unknown as { items: Wire[] }).items.map((s) => s.status.state);
      if (states.length === 1 && states[0] === "Terminated") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    return states;
  }

  it("destroys a sandbox whose creator went away before the answer", async () => {
    const abort = new AbortController();
    const request = fetch(`${server.url}/opensandbox/v1/sandboxes`, {
      method: "POST",
      headers: { "OPEN-SANDBOX-API-KEY": server.apiKey, "content-type": "application/json" },
      body: JSON.stringify({
        image: { uri: "base" },
        timeout: 120,
        entrypoint: ["sleep", "infinity"],
        metadata: { orphan: "yes" },
      }),
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 50);
    await expect(request).rejects.toThrow();
    expect(await statesOfOrphans("yes")).toEqual(["Terminated"]);
  });

  it("destroys a sandbox whose creator closed its connection right after sending the request", async () => {
    // The whole request, then the socket closed at once: the server reads the request from its buffer and
    // learns of the close before it has even authenticated the caller.
    const body = JSON.stringify({
      image: { uri: "base" },
      timeout: 120,
      entrypoint: ["sleep", "infinity"],
      metadata: { orphan: "at-once" },
    });
    const { hostname, port } = new URL(server.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => {
        socket.end(
          `POST /opensandbox/v1/sandboxes HTTP/1.1\r\nHost: ${hostname}\r\nOPEN-SANDBOX-API-KEY: ${server.apiKey}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
          () => {
            socket.destroy();
            resolve();
          },
        );
      });
      socket.on("error", reject);
    });
    expect(await statesOfOrphans("at-once")).toEqual(["Terminated"]);
  });
});
