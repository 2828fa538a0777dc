// The official `e2b` SDK, configured only by E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL (and
// E2B_VOLUME_API_URL for volume content), against Sandpit.
import http from "node:http";
import {
  AuthenticationError,
  CommandExitError,
  FilesystemEventType,
  FileType,
  Sandbox,
  Volume,
  VolumeError,
  VolumeNotFoundError,
  VolumePathNotFoundError,
} from "e2b";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer(
  (s) => {
    server = s;
  },
  { SANDPIT_DOMAIN: "sandpit.test", SANDPIT_METRICS_INTERVAL_MS: "500" },
);

/** A request to the Sandpit server under another Host name (as a wildcard DNS entry would send it). */
function viaHost(host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const url = new URL(server.url);
    const req = http.request({ host: url.hostname, port: url.port, path, headers: { ...headers, host } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const saved = { ...process.env };
const created: Sandbox[] = [];

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "e2b-users", format: "e2b" });
  expect(key).toMatch(/^e2b_[0-9a-f]{40}$/);
  process.env.E2B_API_KEY = key;
  process.env.E2B_API_URL = `${server.url}/e2b`;
  process.env.E2B_SANDBOX_URL = `${server.url}/e2b/envd`;
  // The SDK's volume content calls go to E2B_VOLUME_API_URL (by default https://api.<E2B_DOMAIN>).
  process.env.E2B_VOLUME_API_URL = `${server.url}/e2b`;
  process.env.E2B_DOMAIN = "sandpit.test";
});

afterAll(async () => {
  await Promise.all(created.map((s) => s.kill().catch(() => undefined)));
  process.env = saved;
});

async function newSandbox(opts: Parameters<typeof Sandbox.create>[1] = {}) {
  const sandbox = await Sandbox.create("base", { timeoutMs: 120_000, ...opts });
  created.push(sandbox);
  return sandbox;
}

describe("e2b SDK", () => {
  it("creates a sandbox and runs commands with streamed output, exit codes and the SDK's own error", async () => {
    const sandbox = await newSandbox({ metadata: { suite: "e2b" }, envs: { GREETING: "hello" } });
    expect(sandbox.sandboxId).toMatch(/^sbx_/);
    const out: string[] = [];
    const err: string[] = [];
    const result = await sandbox.commands.run("echo $GREETING; echo oops >&2; whoami; pwd", {
      onStdout: (d) => void out.push(d),
      onStderr: (d) => void err.push(d),
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("hello\nuser\n/home/user\n");
    expect(out.join("")).toBe(result.stdout);
    expect(err.join("")).toBe("oops\n");
    const root = await sandbox.commands.run("whoami", { user: "root" });
    expect(root.stdout.trim()).toBe("root");

    const failure = await sandbox.commands.run("echo bad >&2; exit 3").catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CommandExitError);
    expect((failure as CommandExitError).exitCode).toBe(3);
    expect((failure as CommandExitError).stderr).toBe("bad\n");
  });

  it("runs background commands with wait, kill and stdin", async () => {
    const sandbox = await newSandbox();
    const handle = await sandbox.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done", { background: true });
    const done = await handle.wait();
    expect(done.stdout).toBe("tick 1\ntick 2\ntick 3\n");

    const sleeper = await sandbox.commands.run("sleep 600", { background: true });
    const listed = await sandbox.commands.list();
    expect(listed.map((p) => p.pid)).toContain(sleeper.pid);
    expect(await sleeper.kill()).toBe(true);
    await expect(sleeper.wait()).rejects.toBeInstanceOf(CommandExitError);

    const reader = await sandbox.commands.run("read line; echo got:$line", { background: true, stdin: true });
    await sandbox.commands.sendStdin(reader.pid, "typed\n");
    const read = await reader.wait();
    expect(read.stdout).toBe("got:typed\n");
  });

  it("opens a PTY with input and resize", async () => {
    const sandbox = await newSandbox();
    let output = "";
    const terminal = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => {
        output += new TextDecoder().decode(d);
      },
    });
    await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode("stty size\n"));
    await waitFor(async () => (/24 80/.test(output) ? true : undefined), 10_000, "stty size");
    await sandbox.pty.resize(terminal.pid, { cols: 120, rows: 40 });
    await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode("stty size; exit 0\n"));
    await waitFor(async () => (/40 120/.test(output) ? true : undefined), 10_000, "resized stty size");
    await terminal.wait();
  });

  it("writes, reads, lists, renames, removes and watches files", async () => {
    const sandbox = await newSandbox();
    await sandbox.files.write("notes/a.txt", "alpha");
    expect(await sandbox.files.read("/home/user/notes/a.txt")).toBe("alpha");
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await sandbox.files.write("/tmp/bin.dat", bytes.buffer);
    expect(Array.from(await sandbox.files.read("/tmp/bin.dat", { format: "bytes" }))).toEqual(Array.from(bytes));
    // Written as the sandbox's user, like E2B's envd does.
    expect((await sandbox.commands.run("stat -c %U /home/user/notes/a.txt")).stdout.trim()).toBe("user");

    expect(await sandbox.files.makeDir("/home/user/dir")).toBe(true);
    expect(await sandbox.files.makeDir("/home/user/dir")).toBe(false);
    const entries = await sandbox.files.list("/home/user");
    const names = entries.map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(["notes", "dir"]));
    expect(entries.find((e) => e.name === "dir")?.type).toBe(FileType.DIR);
    expect(await sandbox.files.exists("/home/user/notes/a.txt")).toBe(true);

    const events: { name: string; type: string }[] = [];
    const watcher = await sandbox.files.watchDir("/home/user/dir", (e) => void events.push(e), { recursive: true });
    await sandbox.files.write("/home/user/dir/w.txt", "watched");
    await waitFor(async () => (events.some((e) => e.name === "w.txt") ? true : undefined), 10_000, "watch event");
    await watcher.stop();

    const moved = await sandbox.files.rename("/home/user/notes/a.txt", "/home/user/notes/b.txt");
    expect(moved.path).toBe("/home/user/notes/b.txt");
    await sandbox.files.remove("/home/user/notes");
    expect(await sandbox.files.exists("/home/user/notes/b.txt")).toBe(false);
  });

  it("makes the new directories of an upload the user's, so that the user's commands can add to them", async () => {
    const sandbox = await newSandbox();
    await sandbox.files.write("fresh/deeper/note.txt", "hi\n");
    const owners = await sandbox.commands.run(
      "stat -c %U fresh fresh/deeper fresh/deeper/note.txt && touch fresh/deeper/added",
    );
    expect(owners.stdout).toBe("user\nuser\nuser\n");
  });

  it("watchDir shows writes as the user's create and write events, never Sandpit's upload temp file", async () => {
    const sandbox = await newSandbox();
    await sandbox.files.write("/home/user/w/existing.txt", "old");
    const events: { name: string; type: string }[] = [];
    const watcher = await sandbox.files.watchDir("/home/user/w", (e) => void events.push(e), { recursive: true });
    await sandbox.files.write("/home/user/w/new.txt", "one");
    await sandbox.files.write("/home/user/w/existing.txt", "two");
    // A change made afterwards, once seen, means every event of the writes has arrived.
    await sandbox.commands.run("mkdir /home/user/w/done", { user: "root" });
    await waitFor(async () => (events.some((e) => e.name === "done") ? true : undefined), 10_000, "done event");
    await watcher.stop();
    expect(events.filter((e) => e.name !== "done").map((e) => ({ name: e.name, type: e.type }))).toEqual([
      { name: "new.txt", type: FilesystemEventType.CREATE },
      { name: "new.txt", type: FilesystemEventType.WRITE },
      { name: "existing.txt", type: FilesystemEventType.WRITE },
    ]);
  });

  it("sets the timeout, pauses and connects with memory kept, lists by metadata, and kills", async () => {
    const sandbox = await newSandbox({ metadata: { suite: "e2b", kind: "pausable" } });
    await sandbox.setTimeout(200_000);
    const info = await sandbox.getInfo();
    expect(info.endAt.getTime() - Date.now()).toBeGreaterThan(150_000);
    expect(info.metadata).toEqual({ suite: "e2b", kind: "pausable" });

    await sandbox.commands.run(
      "python3 -c \"import time; open('/tmp/pid','w').write('x')\"; sleep 600 & echo $! > /tmp/sleeper",
      {},
    );
    const pid = (await sandbox.files.read("/tmp/sleeper")).trim();
    expect(await sandbox.betaPause()).toBe(true);
    const paused = await Sandbox.list({ query: { metadata: { kind: "pausable" }, state: ["paused"] } }).nextItems();
    expect(paused.map((s) => s.sandboxId)).toEqual([sandbox.sandboxId]);

    const resumed = await Sandbox.connect(sandbox.sandboxId);
    // The same process is still there: memory and processes were kept.
    expect((await resumed.commands.run(`kill -0 ${pid} && echo alive`)).stdout.trim()).toBe("alive");
    const running = await Sandbox.list({ query: { metadata: { suite: "e2b" } } }).nextItems();
    expect(running.map((s) => s.sandboxId)).toContain(sandbox.sandboxId);

    await resumed.kill();
    expect(await Sandbox.list({ query: { metadata: { kind: "pausable" } } }).nextItems()).toEqual([]);
  });

  it("reports the sandbox's metrics", async () => {
    const sandbox = await newSandbox();
    const metrics = await waitFor(
      async () => ((await sandbox.getMetrics()).length > 0 ? sandbox.getMetrics() : undefined),
      15_000,
      "a metrics sample",
    );
    const last = metrics.at(-1)!;
    const info = await sandbox.getInfo();
    expect(last.cpuCount).toBe(info.cpuCount);
    expect(last.memTotal).toBe(info.memoryMB * 1024 * 1024);
    expect(last.memUsed).toBeGreaterThan(0);
    expect(last.diskTotal).toBeGreaterThan(3 * 1024 ** 3);
    expect(last.timestamp.getTime()).toBeLessThanOrEqual(Date.now());
    expect(await sandbox.getMetrics({ start: new Date(Date.now() + 60_000) })).toEqual([]);
  });

  it("snapshots a sandbox, starts sandboxes from the snapshot, forks, lists and deletes snapshots", async () => {
    const sandbox = await newSandbox();
    await sandbox.files.write("/workspace/state.txt", "before the snapshot");
    const snapshot = await sandbox.createSnapshot({ name: "e2b-snap" });
    expect(snapshot.snapshotId).toMatch(/^snp_/);
    await sandbox.files.write("/workspace/state.txt", "after the snapshot");

    const child = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 120_000 });
    created.push(child);
    expect(await child.files.read("/workspace/state.txt")).toBe("before the snapshot");
    const listed = await Sandbox.listSnapshots().nextItems();
    expect(listed.map((s) => s.snapshotId)).toContain(snapshot.snapshotId);

    const forks = await sandbox.fork({ count: 2 });
    expect(forks).toHaveLength(2);
    for (const fork of forks) {
      if (fork instanceof Error) throw fork;
      created.push(fork);
      expect(fork.sandboxId).not.toBe(sandbox.sandboxId);
      expect(await fork.files.read("/workspace/state.txt")).toBe("after the snapshot");
    }

    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(false);
    await expect(Sandbox.create(snapshot.snapshotId)).rejects.toThrow();
  });

  it("serves sandbox ports at getHost(port) and envd at its own host name, with the access token", async () => {
    const sandbox = await newSandbox();
    await sandbox.commands.run("mkdir -p /tmp/site && echo served > /tmp/site/index.html");
    await sandbox.commands.run("cd /tmp/site && python3 -m http.server 8000", { background: true });
    const host = sandbox.getHost(8000);
    expect(host).toBe(`8000-${sandbox.sandboxId}.sandpit.test`);
    const page = await waitFor(
      async () => {
        const r = await viaHost(host, "/index.html");
        return r.status === 200 ? r : undefined;
      },
      15_000,
      "the web server",
    );
    expect(page.body).toBe("served\n");

    const envdHost = `49983-${sandbox.sandboxId}.sandpit.test`;
    expect((await viaHost(envdHost, "/health")).status).toBe(204);
    const info = await fetch(`${server.url}/e2b/sandboxes/${sandbox.sandboxId}`, {
      headers: { "x-api-key": process.env.E2B_API_KEY! },
    }).then((r) => r.json() as Promise<{ envdAccessToken: string }>);
    const read = await viaHost(envdHost, "/files?path=/tmp/site/index.html", {
      "x-access-token": info.envdAccessToken,
    });
    expect(read).toEqual({ status: 200, body: "served\n" });
    // Without the token, or with another sandbox's, envd refuses.
    expect((await viaHost(envdHost, "/files?path=/etc/passwd")).status).toBe(401);
    const other = await newSandbox();
    const otherInfo = await fetch(`${server.url}/e2b/sandboxes/${other.sandboxId}`, {
      headers: { "x-api-key": process.env.E2B_API_KEY! },
    }).then((r) => r.json() as Promise<{ envdAccessToken: string }>);
    expect(
      (await viaHost(envdHost, "/files?path=/etc/passwd", { "x-access-token": otherInfo.envdAccessToken })).status,
    ).toBe(401);
  });

  it("answers E2B's error shape and hides other organisations' sandboxes", async () => {
    const sandbox = await newSandbox();
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "e2b-intruder", format: "e2b" });
    const res = await fetch(`${server.url}/e2b/sandboxes/${sandbox.sandboxId}`, {
      headers: { "x-api-key": other.key },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: 404, message: expect.stringContaining("not found") });
    const unauthorized = await fetch(`${server.url}/e2b/v2/sandboxes`, { headers: { "x-api-key": "e2b_0000" } });
    expect(unauthorized.status).toBe(401);
    expect(await unauthorized.json()).toMatchObject({ code: 401 });
    const badTemplate = await Sandbox.create("no-such-template").catch((e: unknown) => e);
    expect(String(badTemplate)).toMatch(/template no-such-template not found/);
  });

  it("creates volumes, fills them through the volume content API, mounts them at create, lists and deletes them", async () => {
    const volume = await Volume.create("e2b-data");
    expect(volume.volumeId).toMatch(/^vol_/);
    expect(volume.token).toMatch(/^vtok_\S{40,}$/);
    const written = await volume.writeFile("/config/settings.json", '{"debug":true}\n');
    expect(written).toMatchObject({ name: "settings.json", path: "/config/settings.json", type: "file", size: 15 });
    expect(written.mtime).toBeInstanceOf(Date);
    expect((await volume.makeDir("/logs")).type).toBe("directory");
    await expect(volume.makeDir("/logs")).rejects.toBeInstanceOf(VolumeError);
    await volume.makeDir("/deep/er/still", { force: true });
    expect((await volume.list("/")).map((e) => [e.name, e.type])).toEqual([
      ["config", "directory"],
      ["deep", "directory"],
      ["logs", "directory"],
    ]);
    expect((await volume.list("/deep", { depth: 3 })).map((e) => e.path)).toEqual(["/deep/er", "/deep/er/still"]);
    expect(await volume.readFile("/config/settings.json")).toBe('{"debug":true}\n');
    expect((await volume.getInfo("/config/settings.json")).size).toBe(15);
    expect(await volume.exists("/config")).toBe(true);
    expect(await volume.exists("/nope")).toBe(false);
    await expect(volume.readFile("/nope")).rejects.toBeInstanceOf(VolumePathNotFoundError);
    expect((await volume.updateMetadata("/config/settings.json", { mode: 0o640 })).mode).toBe(0o640);
    await volume.updateMetadata("/config/settings.json", { mode: 0o644 });
    await volume.remove("/deep");
    expect(await volume.exists("/deep")).toBe(false);

    // Mounted at create by the Volume or by its name; the sandbox sees the files and writes its own.
    const sandbox = await newSandbox({ volumeMounts: { "/mnt/data": volume } });
    const byName = await newSandbox({ volumeMounts: { "/srv/shared": "e2b-data" } });
    expect((await sandbox.commands.run("cat /mnt/data/config/settings.json")).stdout).toBe('{"debug":true}\n');
    await sandbox.commands.run("echo from the sandbox > /mnt/data/logs/run.log");
    expect((await byName.commands.run("cat /srv/shared/logs/run.log")).stdout).toBe("from the sandbox\n");
    expect(await volume.readFile("/logs/run.log")).toBe("from the sandbox\n");
    expect((await sandbox.getInfo()).volumeMounts).toEqual([{ name: "e2b-data", path: "/mnt/data" }]);

    // A symlink a sandbox plants in the volume is never followed by the content API.
    await sandbox.commands.run("ln -s /etc /mnt/data/etc-link && ln -s /etc/hostname /mnt/data/host-link");
    await expect(volume.readFile("/etc-link/passwd")).rejects.toThrow(/symlink/);
    await expect(volume.readFile("/host-link")).rejects.toThrow(/symlink/);
    await expect(volume.writeFile("/etc-link/evil", "x")).rejects.toThrow(/symlink/);
    expect((await volume.getInfo("/etc-link")).type).toBe("symlink");

    // The volume's token is its own: a wrong one is refused, another volume's does not open this one.
    await expect(new Volume(volume.volumeId, volume.name, "vtok_wrong").list("/")).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    const second = await Volume.create("e2b-second");
    await expect(new Volume(volume.volumeId, volume.name, second.token).list("/")).rejects.toBeInstanceOf(
      AuthenticationError,
    );
    expect((await Volume.connect(volume.volumeId)).token).toBe(volume.token);
    const listed = await Volume.list();
    expect(listed).toContainEqual({ volumeId: volume.volumeId, name: "e2b-data" });
    expect(listed).toContainEqual({ volumeId: second.volumeId, name: "e2b-second" });

    // Another organisation sees none of it.
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "e2b-volume-intruder", format: "e2b" });
    await expect(Volume.getInfo(volume.volumeId, { apiKey: other.key })).rejects.toBeInstanceOf(VolumeNotFoundError);
    expect(await Volume.destroy(volume.volumeId, { apiKey: other.key })).toBe(false);
    expect(await Volume.list({ apiKey: other.key })).toEqual([]);

    // Errors: a volume that does not exist at create, a name Sandpit cannot take, a volume in use.
    await expect(Sandbox.create("base", { volumeMounts: { "/m": "no-such-volume" } })).rejects.toThrow(
      /no-such-volume not found/,
    );
    await expect(Volume.create("Bad_Name")).rejects.toThrow(/DNS label/);
    await expect(Volume.create("e2b-data")).rejects.toThrow(/already exists/);
    await expect(Volume.destroy(volume.volumeId)).rejects.toThrow(/mounted by/);

    await sandbox.kill();
    await byName.kill();
    expect(await Volume.destroy(volume.volumeId)).toBe(true);
    expect(await Volume.destroy(second.volumeId)).toBe(true);
    expect(await Volume.destroy(volume.volumeId)).toBe(false);
    await expect(Volume.getInfo(volume.volumeId)).rejects.toBeInstanceOf(VolumeNotFoundError);
    await expect(volume.readFile("/config/settings.json")).rejects.toBeInstanceOf(VolumePathNotFoundError);
  });
});
