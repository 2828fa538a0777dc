// The SDK's lifecycle, network, terminal, admin and meta methods against a real server and real gVisor
// sandboxes: one sandbox for the file, plus the one a snapshot starts.
import {
  Admin,
  type ConnectionOptions,
  EgressLog,
  type EgressLogEntry,
  Meta,
  NotFoundError,
  Sandbox,
  Snapshots,
} from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

const ADMIN_KEY = "admin-sdk-platform-0123456789";
let server: TestServer;
useTestServer(
  (s) => {
    server = s;
  },
  { SANDPIT_ADMIN_KEY: ADMIN_KEY },
);

let connection: ConnectionOptions;
let admin: ConnectionOptions;
let sandbox: Sandbox;

beforeAll(async () => {
  connection = { apiUrl: server.url, apiKey: server.apiKey };
  admin = { apiUrl: server.url, apiKey: ADMIN_KEY };
  sandbox = await Sandbox.create({ ports: [8000], timeoutMs: 600_000 }, connection);
});

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
});

/** Polls `probe` until it returns a value (bounded). */
async function eventually<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe("meta", () => {
  it("answers health and the OpenAPI document without a key", async () => {
    expect(await Meta.health({ apiUrl: server.url })).toEqual({ ok: true });
    expect(Object.keys((await Meta.openApi({ apiUrl: server.url })).paths)).toContain("/v1/sandboxes/{id}/fork");
  });
});

describe("network", () => {
  it("lists exposed ports with their URLs", async () => {
    const { ports, public: open, trafficTokenHeader } = await sandbox.ports();
    expect(ports.map((p) => p.port)).toEqual([8000]);
    expect(ports[0]!.url).toContain(`/v1/sandboxes/${sandbox.id}/ports/8000`);
    expect(open).toBe(false);
    expect(trafficTokenHeader).toMatch(/^x-/i);
  });

  it("replaces the network policy and shows denied attempts in the logs, listed and followed", async () => {
    const info = await sandbox.setNetworkPolicy({ mode: "deny-all" });
    expect(info.networkPolicy).toEqual({ mode: "deny-all" });
    expect(sandbox.toJSON().networkPolicy).toEqual({ mode: "deny-all" });

    const before = await sandbox.egressLog();
    const after = before.at(-1)?.seq ?? 0;
    const stop = new AbortController();
    const followed: EgressLogEntry[] = [];
    const following = (async () => {
      for await (const entry of sandbox.followEgressLog({ after, signal: stop.signal })) {
        followed.push(entry);
        stop.abort();
      }
    })();
    const orgStop = new AbortController();
    const orgFollowed: EgressLogEntry[] = [];
    const orgFollowing = (async () => {
      for await (const entry of EgressLog.follow(
        { sandboxId: sandbox.id, after, signal: orgStop.signal },
        connection,
      )) {
        orgFollowed.push(entry);
        orgStop.abort();
      }
    })();

    await sandbox.commands.run("curl -s -m 2 http://169.254.169.254/ ; true");
    const denied = await eventually(async () => {
      const entries = await sandbox.egressLog({ decision: "denied", after });
      return entries.length > 0 ? entries : undefined;
    }, "a denied entry");
    expect(denied[0]).toMatchObject({ sandboxId: sandbox.id, ip: "169.254.169.254", decision: "denied" });
    expect((await EgressLog.list({ sandboxId: sandbox.id, after }, connection)).map((e) => e.seq)).toContain(
      denied[0]!.seq,
    );
    expect(await sandbox.egressLog({ decision: "allowed", after })).toEqual([]);

    await Promise.all([following, orgFollowing]);
    expect(followed[0]).toMatchObject({ seq: denied[0]!.seq, decision: "denied" });
    expect(orgFollowed[0]).toMatchObject({ seq: denied[0]!.seq, decision: "denied" });
    await sandbox.setNetworkPolicy({ mode: "allow-all" });
  });
});

describe("snapshots", () => {
  it("snapshots a sandbox, starts one from the snapshot, lists, gets and deletes it", async () => {
    await sandbox.files.write("/root/marker.txt", "before the snapshot");
    const snapshot = await sandbox.snapshot({ name: "sdk-platform" });
    expect(snapshot).toMatchObject({ name: "sdk-platform", sourceSandboxId: sandbox.id });
    expect((await Snapshots.list(connection)).map((s) => s.id)).toContain(snapshot.id);
    const ready = await eventually(async () => {
      const current = await Snapshots.get(snapshot.id, connection);
      return current.status === "ready" ? current : undefined;
    }, "a ready snapshot");
    expect(ready.id).toBe(snapshot.id);

    const copy = await Sandbox.create({ snapshotId: snapshot.id }, connection);
    try {
      expect(copy.status).toBe("running");
      expect(await copy.files.read("/root/marker.txt")).toBe("before the snapshot");
    } finally {
      await copy.kill();
    }
    await Snapshots.delete(snapshot.id, connection);
    await expect(Snapshots.get(snapshot.id, connection)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe("terminals over HTTP", () => {
  it("lists, gets, types into, resizes and ends a terminal", async () => {
    const terminal = await sandbox.terminals.create({ cols: 80, rows: 24 });
    terminal.disconnect();
    expect((await sandbox.terminals.list()).map((t) => t.terminalId)).toContain(terminal.id);
    await sandbox.terminals.sendInput(terminal.id, "echo typed > /tmp/typed.txt\r");
    await eventually(async () => {
      const text = await sandbox.files.read("/tmp/typed.txt").catch(() => "");
      return text === "typed\n" ? text : undefined;
    }, "the typed command's file");
    await sandbox.terminals.resize(terminal.id, 120, 40);
    expect(await sandbox.terminals.get(terminal.id)).toMatchObject({ cols: 120, rows: 40 });
    await sandbox.terminals.kill(terminal.id);
    await expect(sandbox.terminals.get(terminal.id)).rejects.toBeInstanceOf(NotFoundError);
    expect((await sandbox.terminals.list()).map((t) => t.terminalId)).not.toContain(terminal.id);
  });
});

describe("admin", () => {
  it("manages warm pools and quotas and reads the Prometheus metrics with the admin key", async () => {
    const pool = await Admin.putWarmPool("sdk-empty", { template: "base", size: 0 }, admin);
    expect(pool).toMatchObject({ id: "sdk-empty", template: "base", size: 0, vcpus: 1 });
    expect(await Admin.warmPools(admin)).toContainEqual(expect.objectContaining({ id: "sdk-empty", ready: 0 }));
    await Admin.deleteWarmPool("sdk-empty", admin);
    expect((await Admin.warmPools(admin)).map((p) => p.id)).not.toContain("sdk-empty");

    const set = await Admin.setQuota("sdk-org", { maxSandboxes: 3, maxVcpus: null, maxMemoryMb: null }, admin);
    expect(set.own.maxSandboxes).toBe(3);
    expect((await Admin.quota("sdk-org", admin)).effective.maxSandboxes).toBe(3);

    expect(await Admin.prometheusMetrics(admin)).toMatch(/^# (HELP|TYPE) sandpit_/m);
    await expect(Admin.warmPools(connection)).rejects.toMatchObject({ status: 401 });
  });
});
