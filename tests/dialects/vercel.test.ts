// The official `@vercel/sandbox` SDK against Sandpit's Vercel dialect. The SDK's base URL is fixed
// (https://vercel.com/api), so it gets a `fetch` that sends its requests to Sandpit's /vercel instead —
// the recipe users follow. Plus the seed's raw `POST /v1/sandboxes` and error shapes over plain HTTP.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Sandbox, Snapshot } from "@vercel/sandbox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { type FakeInternet, startFakeInternet } from "../helpers/fake-internet.js";
import { gitRef, type LoopbackHttp, makeGitRepo, startLoopbackHttp } from "../helpers/loopback-http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const FAKE_NET = 76;
const VERCEL_API = "https://vercel.com/api";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let net: FakeInternet;
/** Serves the git repository and the tarball that sources come from. */
let origin: LoopbackHttp;

/**
 * The recipe: the same request, to Sandpit's /vercel instead of the SDK's fixed origin. `init` goes
 * through unchanged — it carries the SDK's own undici agent, whose unlimited body timeout keeps quiet
 * log streams open.
 */
function sandpitFetch(base: string): typeof fetch {
  return (input, init) => fetch(String(input).replace(VERCEL_API, `${base}/vercel`), init);
}

/** What every SDK call needs: the Sandpit key as the token, any team and project, the fetch. */
const credentials = () => ({
  token: server.apiKey,
  teamId: "team_sandpit",
  projectId: "prj_vercel_test",
  fetch: sandpitFetch(server.url),
});

beforeAll(async () => {
  net = await startFakeInternet(FAKE_NET);
  origin = await startLoopbackHttp();
  const commits = makeGitRepo(origin, "app", [{ "README.md": "first\n" }, { "README.md": "second\n" }]);
  gitRef(origin, "app", "tag", "v1", commits[0]!);
  const content = mkdtempSync("/var/tmp/sandpit-vercel-tarball-");
  writeFileSync(path.join(content, "data.txt"), "from the tarball\n");
  execFileSync("tar", ["-czf", path.join(origin.filesDir, "app.tar.gz"), "-C", content, "."]);
  rmSync(content, { recursive: true, force: true });
  // Sources come from this loopback server only; every other private address stays refused.
  server = await startTestServer({
    SANDPIT_DNS_UPSTREAM: net.ip.dns,
    SANDPIT_OUTBOUND_ALLOWED_HOSTS: new URL(origin.url).host,
  });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await net?.close();
  await origin?.close();
});

/** The Sandpit sandbox behind a Vercel session, from Sandpit's own API. */
async function native(id: string) {
  const res = await api.get<SandboxBody>(`/v1/sandboxes/${id}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** Runs a small Node program in the sandbox and returns what it printed and its exit code. */
async function node(sandbox: Sandbox, program: string) {
  const done = await sandbox.runCommand("node", ["-e", program]);
  return { exitCode: done.exitCode, stdout: (await done.stdout()).trim() };
}

const fetchProgram = (url: string) =>
  `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(4000) })` +
  ".then((r) => console.log(r.status)).catch((e) => { console.log('failed', e.cause?.code ?? e.name); process.exit(1) })";

describe("@vercel/sandbox SDK", () => {
  let sandbox: Sandbox;

  beforeAll(async () => {
    sandbox = await Sandbox.create({
      ...credentials(),
      name: "sdk-main",
      runtime: "node24",
      resources: { vcpus: 1 },
      ports: [3000],
      timeout: 120_000,
      env: { GREETING: "hello from vercel" },
      tags: { suite: "vercel" },
    });
  });

  it("creates a node24 sandbox with Vercel's sizes, names, routes and defaults", async () => {
    expect(sandbox.name).toBe("sdk-main");
    expect(sandbox.status).toBe("running");
    expect(sandbox.runtime).toBe("node24");
    expect([sandbox.vcpus, sandbox.memory]).toEqual([1, 2048]);
    expect(sandbox.persistent).toBe(true);
    expect(sandbox.timeout).toBe(120_000);
    expect(sandbox.tags).toEqual({ suite: "vercel" });
    expect(sandbox.cwd).toBe("/vercel/sandbox");
    const session = sandbox.currentSession();
    const [route] = sandbox.routes;
    expect(route).toEqual({
      port: 3000,
      url: `${server.url}/v1/sandboxes/${session.sessionId}/ports/3000`,
      subdomain: `3000-${session.sessionId}`,
    });
    const sandpit = await native(session.sessionId);
    expect(sandpit).toMatchObject({
      status: "running",
      template: "node24",
      resources: { vcpus: 1, memoryMb: 2048 },
      ports: [3000],
      publicPorts: true,
      cwd: "/vercel/sandbox",
      timeoutAction: "pause",
    });
    expect(sandpit.envKeys).toContain("GREETING");
    const again = await Sandbox.get({ ...credentials(), name: "sdk-main" });
    expect(again.currentSession().sessionId).toBe(session.sessionId);
    const listed = await Sandbox.list({ ...credentials() });
    expect(listed.sandboxes.map((s) => s.name)).toContain("sdk-main");
  });

  it("runs a command to completion with its output, exit code, env, cwd and sudo", async () => {
    const done = await sandbox.runCommand("node", [
      "-e",
      "console.log(process.version, process.env.GREETING, process.cwd()); console.error('to stderr'); process.exit(3)",
    ]);
    expect(done.exitCode).toBe(3);
    expect(await done.stdout()).toMatch(/^v24\.\d+\.\d+ hello from vercel \/vercel\/sandbox\n$/);
    expect(await done.stderr()).toBe("to stderr\n");
    const sudo = await sandbox.runCommand({ cmd: "id", args: ["-u"], sudo: true, env: { X: "1" } });
    expect((await sudo.stdout()).trim()).toBe("0");
    const fetched = await sandbox.getCommand(done.cmdId);
    expect(fetched.exitCode).toBe(3);
  });

  it("runs commands as vercel-sandbox in its own /vercel/sandbox, sudo as root, and writes files as it", async () => {
    const id = await sandbox.runCommand("sh", ["-c", "id -un; id -gn; pwd; stat -c %U /vercel/sandbox; echo $HOME"]);
    expect(await id.stdout()).toBe(
      "vercel-sandbox\nvercel-sandbox\n/vercel/sandbox\nvercel-sandbox\n/home/vercel-sandbox\n",
    );
    const root = await sandbox.runCommand({ cmd: "id", args: ["-un"], sudo: true });
    expect((await root.stdout()).trim()).toBe("root");
    // What a command writes is the user's, and the SDK's file calls read it.
    const wrote = await sandbox.runCommand("sh", ["-c", "echo made by a command > by-command.txt"]);
    expect(wrote.exitCode).toBe(0);
    expect((await sandbox.readFileToBuffer({ path: "by-command.txt" }))?.toString()).toBe("made by a command\n");
    // What the SDK writes is the user's too: a command can change it without sudo.
    await sandbox.writeFiles([{ path: "owned/by-sdk.txt", content: Buffer.from("from the sdk\n") }]);
    await sandbox.mkDir("owned-dir");
    const owners = await sandbox.runCommand("sh", [
      "-c",
      "stat -c %U by-command.txt owned owned/by-sdk.txt owned-dir && echo changed >> owned/by-sdk.txt && touch owned-dir/x",
    ]);
    expect(await owners.stdout()).toBe("vercel-sandbox\nvercel-sandbox\nvercel-sandbox\nvercel-sandbox\n");
    expect(owners.exitCode).toBe(0);
    // Without sudo, root's files stay root's.
    const denied = await sandbox.runCommand("sh", ["-c", "echo x > /etc/not-mine"]);
    expect(denied.exitCode).not.toBe(0);
  });

  it("gives Vercel's account to a sandbox that lacks it (made before commands ran as it) on its first command", async () => {
    const old = await Sandbox.create({ ...credentials(), resources: { vcpus: 1 }, timeout: 60_000 });
    const nativeId = old.currentSession().sessionId;
    const removed = await api.exec(nativeId, {
      command: "userdel vercel-sandbox 2>/dev/null; ! id vercel-sandbox",
      user: "root",
    });
    expect(removed.exitCode).toBe(0);
    const id = await old.runCommand("id", ["-un"]);
    expect({ exitCode: id.exitCode, user: (await id.stdout()).trim() }).toEqual({
      exitCode: 0,
      user: "vercel-sandbox",
    });
    await old.stop();
  });

  it("streams the logs of a detached command, waits for it and kills another", async () => {
    const cmd = await sandbox.runCommand({
      cmd: "sh",
      args: ["-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo oops >&2; exit 4"],
      detached: true,
    });
    expect(cmd.exitCode).toBeNull();
    const lines: string[] = [];
    for await (const log of cmd.logs()) lines.push(`${log.stream}:${log.data}`);
    expect(lines.join("")).toBe("stdout:line 1\nstdout:line 2\nstdout:line 3\nstderr:oops\n");
    const finished = await cmd.wait();
    expect(finished.exitCode).toBe(4);
    expect(await finished.stdout()).toBe("line 1\nline 2\nline 3\n");

    const sleeper = await sandbox.runCommand({ cmd: "sleep", args: ["60"], detached: true });
    await sleeper.kill("SIGTERM");
    const killed = await sleeper.wait();
    expect(killed.exitCode).not.toBe(0);
  });

  it("writes files as a gzip tar, reads one back, makes a directory", async () => {
    await sandbox.writeFiles([
      { path: "hello.txt", content: Buffer.from("hello, sandpit\n") },
      { path: "/tmp/tools/run.sh", content: Buffer.from("#!/bin/sh\necho ran\n"), mode: 0o755 },
    ]);
    expect((await sandbox.readFileToBuffer({ path: "/vercel/sandbox/hello.txt" }))?.toString()).toBe(
      "hello, sandpit\n",
    );
    expect(await sandbox.readFileToBuffer({ path: "missing.txt" })).toBeNull();
    const ran = await sandbox.runCommand("/tmp/tools/run.sh");
    expect(await ran.stdout()).toBe("ran\n");
    await sandbox.mkDir("made");
    expect((await sandbox.runCommand("test", ["-d", "/vercel/sandbox/made"])).exitCode).toBe(0);
    await expect(sandbox.mkDir("made")).rejects.toThrow(/409/);
    expect(await sandbox.fs.readFile("hello.txt", "utf8")).toBe("hello, sandpit\n");
  });

  it("serves an exposed port at its route's URL, publicly as on Vercel", async () => {
    const server3000 = "require('http').createServer((q, s) => s.end('port ok ' + q.url)).listen(3000)";
    const running = await sandbox.runCommand({ cmd: "node", args: ["-e", server3000], detached: true });
    const { url } = sandbox.routes.find((r) => r.port === 3000)!;
    const text = await waitFor(async () => {
      const res = await fetch(`${url}/hello?x=1`).catch(() => undefined);
      return res?.status === 200 ? await res.text() : undefined;
    }, 15_000);
    expect(text).toBe("port ok /hello?x=1");
    await running.kill();
  });

  it("extends the timeout of the running session", async () => {
    const before = sandbox.expiresAt!.getTime();
    await sandbox.extendTimeout(60_000);
    const after = sandbox.expiresAt!.getTime();
    expect(after - before).toBeGreaterThanOrEqual(59_000);
    expect(after - before).toBeLessThan(65_000);
    const sandpit = await native(sandbox.currentSession().sessionId);
    expect(Math.abs(Date.parse(sandpit.expiresAt!) - after)).toBeLessThan(2_000);
  });

  it("updates the network policy: deny-all cuts the (fake) internet, an allow list opens one name", async () => {
    const id = sandbox.currentSession().sessionId;
    expect((await node(sandbox, fetchProgram("http://web.test/"))).stdout).toBe("200");
    await sandbox.updateNetworkPolicy("deny-all");
    expect((await native(id)).networkPolicy).toEqual({ mode: "deny-all" });
    expect(sandbox.currentSession().networkPolicy).toBe("deny-all");
    expect((await node(sandbox, fetchProgram(`http://${net.ip.web}/`))).exitCode).toBe(1);

    await sandbox.update({ networkPolicy: { allow: ["web.test"] } });
    expect((await native(id)).networkPolicy).toMatchObject({ mode: "custom", allow: { domains: ["web.test"] } });
    expect(sandbox.networkPolicy).toEqual({ allow: ["web.test"] });
    expect((await node(sandbox, fetchProgram("http://web.test/"))).stdout).toBe("200");
    expect((await node(sandbox, fetchProgram("http://allowed.test/"))).exitCode).toBe(1);
  });

  it("takes the seed's default-allow mode: everything reachable except what is denied", async () => {
    const id = sandbox.currentSession().sessionId;
    const res = await vercel("POST", `/v2/sandboxes/sessions/${id}/network-policy`, {
      mode: "default-allow",
      deniedDomains: ["denied.test"],
      deniedCIDRs: [`${net.ip.denied}/32`],
    });
    expect(res.status).toBe(200);
    expect(res.body.session.networkPolicy).toEqual({
      mode: "custom",
      allowedDomains: ["*"],
      allowedCIDRs: ["0.0.0.0/0"],
      deniedCIDRs: [`${net.ip.denied}/32`],
      deniedDomains: ["denied.test"],
    });
    expect((await node(sandbox, fetchProgram("http://web.test/"))).stdout).toBe("200");
    expect((await node(sandbox, fetchProgram(`http://${net.ip.allowed}/`))).stdout).toBe("200");
    expect((await node(sandbox, fetchProgram("http://denied.test/"))).exitCode).toBe(1);
    expect((await node(sandbox, fetchProgram(`http://${net.ip.denied}/`))).exitCode).toBe(1);
    await sandbox.updateNetworkPolicy("allow-all");
  });

  it("snapshots (which stops the session) and creates a new sandbox from the snapshot", async () => {
    await sandbox.writeFiles([{ path: "state.txt", content: Buffer.from("kept\n") }]);
    const sourceSession = sandbox.currentSession().sessionId;
    const snapshot = await sandbox.snapshot();
    expect(snapshot.status).toBe("created");
    expect(snapshot.sourceSessionId).toBe(sourceSession);
    expect(snapshot.sizeBytes).toBeGreaterThan(0);
    expect(sandbox.status).toBe("stopped");
    expect((await native(sourceSession)).status).toBe("paused");

    const fetched = await Snapshot.get({ ...credentials(), snapshotId: snapshot.snapshotId });
    expect(fetched.status).toBe("created");
    const listed = await Snapshot.list({ ...credentials(), name: "sdk-main" });
    expect(listed.snapshots.map((s) => s.id)).toContain(snapshot.snapshotId);

    const child = await Sandbox.create({
      ...credentials(),
      source: { type: "snapshot", snapshotId: snapshot.snapshotId },
      persistent: false,
      timeout: 60_000,
    });
    expect(child.sourceSnapshotId).toBe(snapshot.snapshotId);
    expect((await child.readFileToBuffer({ path: "state.txt" }))?.toString()).toBe("kept\n");
    await child.stop();
    expect((await native(child.currentSession().sessionId)).status).toBe("destroyed");

    await fetched.delete();
    expect(fetched.status).toBe("deleted");
    expect((await vercel("GET", `/v2/sandboxes/snapshots/${snapshot.snapshotId}`)).status).toBe(404);
  });

  it("resumes a stopped persistent sandbox on the next call, state kept; delete ends it", async () => {
    // The snapshot stopped it; the SDK resumes it (410 sandbox_stopped → GET ?resume=true) and retries.
    const read = await sandbox.runCommand("cat", ["state.txt"]);
    expect(await read.stdout()).toBe("kept\n");
    expect(sandbox.status).toBe("running");
    const sessions = await sandbox.listSessions();
    expect(sessions.sessions.map((s) => [s.id, s.status])).toEqual([[sandbox.currentSession().sessionId, "running"]]);
    await sandbox.stop();
    expect(sandbox.status).toBe("stopped");
    const id = sandbox.currentSession().sessionId;
    expect((await native(id)).status).toBe("paused");
    await sandbox.delete();
    expect((await native(id)).status).toBe("destroyed");
    await expect(Sandbox.get({ ...credentials(), name: "sdk-main" })).rejects.toThrow(/404/);
  });

  it("creates from a git revision (shallow) and from a tarball, into /vercel/sandbox", async () => {
    const [fromGit, fromTarball] = await Promise.all([
      Sandbox.create({
        ...credentials(),
        source: { type: "git", url: `${origin.url}/git/app.git`, revision: "v1", depth: 1 },
        runtime: "python3.13",
        resources: { vcpus: 1 },
        persistent: false,
      }),
      Sandbox.create({
        ...credentials(),
        source: { type: "tarball", url: `${origin.url}/files/app.tar.gz` },
        resources: { vcpus: 1 },
        persistent: false,
      }),
    ]);
    expect((await fromGit.readFileToBuffer({ path: "README.md" }))?.toString()).toBe("first\n");
    const depth = await fromGit.runCommand("git", ["rev-list", "--count", "HEAD"]);
    expect((await depth.stdout()).trim()).toBe("1");
    expect(fromTarball.runtime).toBe("node24");
    expect((await fromTarball.readFileToBuffer({ path: "/vercel/sandbox/data.txt" }))?.toString()).toBe(
      "from the tarball\n",
    );
    await Promise.all([fromGit.stop(), fromTarball.stop()]);
    const bad = await vercel("POST", "/v2/sandboxes", {
      source: { type: "tarball", url: `${origin.url}/files/missing.tar.gz` },
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, "bad_request"]);
    expect(bad.body.error.message).toContain("tarball");
  });

  it("forks a sandbox under its own name: files and running processes carried over, the two independent", async () => {
    const source = await Sandbox.create({
      ...credentials(),
      name: "fork-source",
      resources: { vcpus: 1 },
      persistent: false,
      timeout: 120_000,
    });
    const forks: Sandbox[] = [];
    try {
      await source.writeFiles([{ path: "before.txt", content: Buffer.from("written before the fork\n") }]);
      // A background counter: the count grows only where the process is alive.
      await source.runCommand({
        cmd: "sh",
        args: ["-c", "i=0; while true; do i=$((i+1)); echo $i > counter.txt; sleep 0.2; done"],
        detached: true,
      });
      const count = async (s: Sandbox) => Number((await s.readFileToBuffer({ path: "counter.txt" }))?.toString() ?? 0);
      await waitFor(async () => ((await count(source)) > 0 ? true : undefined), 10_000, "the counter to start");

      const fork = await Sandbox.fork({ ...credentials(), sourceSandbox: "fork-source", name: "fork-child" });
      forks.push(fork);
      expect(fork.name).toBe("fork-child");
      expect(fork.status).toBe("running");
      expect(fork.currentSession().sessionId).not.toBe(source.currentSession().sessionId);
      expect([fork.persistent, fork.timeout, fork.vcpus]).toEqual([false, 120_000, 1]);
      expect((await fork.readFileToBuffer({ path: "before.txt" }))?.toString()).toBe("written before the fork\n");
      const forkedAt = await count(fork);
      expect(forkedAt).toBeGreaterThan(0);
      await waitFor(async () => ((await count(fork)) > forkedAt + 2 ? true : undefined), 10_000, "the fork's counter");

      await fork.writeFiles([{ path: "fork-only.txt", content: Buffer.from("only in the fork\n") }]);
      expect(await source.readFileToBuffer({ path: "fork-only.txt" })).toBeNull();
      expect((await native(source.currentSession().sessionId)).status).toBe("running");
      const sourceAt = await count(source);
      await waitFor(
        async () => ((await count(source)) > sourceAt + 2 ? true : undefined),
        10_000,
        "the source's counter",
      );
      // The source's name still means the source, not its newer fork.
      const byName = await Sandbox.get({ ...credentials(), name: "fork-source" });
      expect(byName.currentSession().sessionId).toBe(source.currentSession().sessionId);

      const taken = await vercel("POST", "/v2/sandboxes/fork-source/fork", { name: "fork-child" });
      expect([taken.status, taken.body.error.code]).toEqual([409, "conflict"]);
      const resized = await vercel("POST", "/v2/sandboxes/fork-source/fork", { resources: { vcpus: 2 } });
      expect([resized.status, resized.body.error.code]).toEqual([501, "not_supported"]);
      expect(resized.body.error.message).toContain("resources");

      // Without a name the fork is called by its session id, as an unnamed sandbox is.
      const unnamed = await Sandbox.fork({ ...credentials(), sourceSandbox: "fork-source" });
      forks.push(unnamed);
      expect(unnamed.name).toBe(unnamed.currentSession().sessionId);
    } finally {
      await Promise.all([source, ...forks].map((s) => s.stop()));
    }
    expect((await native(source.currentSession().sessionId)).status).toBe("destroyed");
  });

  it("answers what Sandpit cannot do with a not-supported error", async () => {
    await expect(Sandbox.create({ ...credentials(), image: "my-repo:v1" })).rejects.toThrow(/501.*image/);
  });
});

/** A raw request to the Vercel dialect, as curl would send it. */
async function vercel(method: string, path: string, body?: unknown, key: string | null = server.apiKey) {
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${server.url}/vercel${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  // biome-ignore lint/suspicious/noExplicitAny: raw responses are checked field by field
  const parsed: any = type.includes("json") && text ? JSON.parse(text) : text;
  return { status: res.status, type, body: parsed };
}

describe("raw HTTP", () => {
  it("creates a sandbox the way the seed shows it (POST /v1/sandboxes) and uses its session routes", async () => {
    const res = await vercel("POST", "/v1/sandboxes?teamId=team_x&slug=my-team", {
      runtime: "python3.13",
      resources: { vcpus: 1, memory: 2048 },
      timeout: 60_000,
      env: { MODE: "raw" },
      projectId: "prj_raw",
      networkPolicy: { mode: "default-deny", allowedDomains: ["web.test"], allowedCIDRs: [`${net.ip.allowed}/32`] },
    });
    expect(res.status).toBe(200);
    const s = res.body.sandbox;
    expect(s).toMatchObject({
      memory: 2048,
      vcpus: 1,
      region: "sandpit",
      runtime: "python3.13",
      timeout: 60_000,
      status: "running",
      cwd: "/vercel/sandbox",
      networkPolicy: {
        mode: "custom",
        allowedDomains: ["web.test"],
        allowedCIDRs: [`${net.ip.allowed}/32`],
      },
    });
    expect(res.body.routes).toEqual([]);
    for (const field of ["requestedAt", "createdAt", "updatedAt", "startedAt"]) expect(typeof s[field]).toBe("number");

    const cmd = await fetch(`${server.url}/vercel/v1/sandboxes/${s.id}/cmd`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        command: "python3",
        args: ["-c", "import os; print(os.environ['MODE'])"],
        wait: true,
        logs: true,
      }),
    });
    expect(cmd.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await cmd.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines[0].command).toMatchObject({
      name: "python3",
      exitCode: null,
      sessionId: s.id,
      cwd: "/vercel/sandbox",
    });
    expect(lines[1]).toEqual({ stream: "stdout", data: "raw\n" });
    expect(lines.at(-1).command).toMatchObject({ id: lines[0].command.id, exitCode: 0 });

    // v1 sandboxes are not persistent: stop ends them.
    const stopped = await vercel("POST", `/v1/sandboxes/${s.id}/stop`);
    expect(stopped.body.sandbox.status).toBe("stopped");
    expect((await native(s.id)).status).toBe("destroyed");
    const again = await vercel("POST", `/v1/sandboxes/${s.id}/cmd`, { command: "true" });
    expect(again.status).toBe(410);
    expect(again.body.error.code).toBe("sandbox_stopped");
    const resume = await vercel("GET", `/v2/sandboxes/${s.id}?resume=true`);
    expect([resume.status, resume.body.error.message]).toEqual([
      404,
      `Sandbox ${s.id} was not persistent: it ended when its session stopped`,
    ]);
  });

  it("names the field and the rule of invalid requests in Vercel's error shape", async () => {
    const res = await vercel("POST", "/v1/sandboxes", {
      resources: { vcpus: 3 },
      timeout: 5,
      ports: [1, 2, 3, 4, 5],
      networkPolicy: { mode: "custom", allowedCIDRs: ["10.0.0.300/8"] },
      runtime: "node18",
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("bad_request");
    const fields = res.body.error.fields.map((f: { field: string }) => f.field).sort();
    expect(fields).toEqual(["networkPolicy.allowedCIDRs.0", "ports", "resources.vcpus", "runtime", "timeout"]);
    expect(res.body.error.message).toContain("resources.vcpus: must be 1 or an even number");
    const memory = await vercel("POST", "/v2/sandboxes", { resources: { vcpus: 2, memory: 1024 } });
    expect(memory.body.error.message).toContain("resources.memory: must equal vcpus * 2048 (4096)");
  });

  it("answers 404 for unknown sandboxes, sessions, commands and snapshots", async () => {
    for (const path of [
      "/v2/sandboxes/no-such-sandbox",
      "/v2/sandboxes/sessions/sbx_aaaaaaaaaaaaaaaaaaaa",
      "/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa",
      "/v2/sandboxes/snapshots/snp_aaaaaaaaaaaaaaaaaaaa",
      "/v2/nothing/here",
    ]) {
      const res = await vercel("GET", path);
      expect([path, res.status, res.body.error.code]).toEqual([path, 404, "not_found"]);
    }
  });

  it("refuses a missing or unknown token the way Vercel does (403 forbidden)", async () => {
    const missing = await vercel("GET", "/v2/sandboxes", undefined, null);
    expect(missing).toMatchObject({
      status: 403,
      body: {
        error: { code: "forbidden", message: "The request is missing an authentication token", missingToken: true },
      },
    });
    const wrong = await vercel("GET", "/v2/sandboxes", undefined, "sp_not_a_key");
    expect(wrong).toMatchObject({
      status: 403,
      body: { error: { code: "forbidden", message: "Not authorized", invalidToken: true } },
    });
  });
});
