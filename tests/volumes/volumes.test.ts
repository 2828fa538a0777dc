import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { ConflictError, NotFoundError, Sandbox, Volumes } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { repoRoot, serverEntry } from "../helpers/paths.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface VolumeBody {
  id: string;
  name: string;
  sizeMb: number;
  usedBytes: number | null;
  mountedBy: string[];
  createdAt: string;
}

interface VolumesSandbox extends SandboxBody {
  volumes: { name?: string; hostPath?: string; mountPath: string; readOnly: boolean; subPath?: string }[];
}

const run = promisify(execFile);

let server: TestServer;
let api: ReturnType<typeof apiClient>;
/** A second organisation on the same server. */
let other: ReturnType<typeof apiClient>;
/** The directory host-path volumes may come from, and one beside it that is not allowed. */
let hostRoot: string;
let allowedDir: string;
let forbiddenDir: string;

beforeAll(async () => {
  hostRoot = mkdtempSync("/var/tmp/sandpit-hostvol-");
  allowedDir = path.join(hostRoot, "allowed");
  forbiddenDir = path.join(hostRoot, "forbidden");
  mkdirSync(path.join(allowedDir, "project"), { recursive: true });
  mkdirSync(forbiddenDir);
  writeFileSync(path.join(allowedDir, "project/from-host.txt"), "written on the host\n");
  writeFileSync(path.join(forbiddenDir, "secret.txt"), "not for sandboxes\n");
  // A symlink inside the allowed directory that points out of it.
  symlinkSync(forbiddenDir, path.join(allowedDir, "way-out"));
  server = await startTestServer({ SANDPIT_HOST_VOLUME_PATHS: `${allowedDir}:/nonexistent-prefix` });
  api = apiClient(server);
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "volumes-other-org" });
  other = apiClient(server, key);
});

afterAll(async () => {
  try {
    await server?.close();
  } finally {
    if (hostRoot) rmSync(hostRoot, { recursive: true, force: true });
  }
});

const sh = async (id: string, command: string, client = api) => {
  const r = await client.exec(id, { command });
  return { out: r.stdout.trim(), err: r.stderr.trim(), code: r.exitCode };
};

async function createVolume(name: string, body: Record<string, unknown> = {}, client = api): Promise<VolumeBody> {
  const res = await client.post<VolumeBody>("/v1/volumes", { name, ...body });
  if (res.status !== 201) throw new Error(`volume create failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

const createSandbox = (body: Record<string, unknown>, client = api) =>
  client.createSandbox(body) as Promise<VolumesSandbox>;

const destroy = (...ids: string[]) => Promise.all(ids.map((id) => api.del(`/v1/sandboxes/${id}`)));

async function sandboxCount(client = api): Promise<number> {
  return (await client.get<{ sandboxes: unknown[] }>("/v1/sandboxes?includeDestroyed=true")).body.sandboxes.length;
}

/** A create that must fail without leaving a sandbox behind; returns its error response. */
async function createFails(body: Record<string, unknown>, client = api) {
  const before = await sandboxCount(client);
  const res = await client.post<ErrorBody>("/v1/sandboxes", body);
  expect(await sandboxCount(client)).toBe(before);
  return res;
}

/** Ids of the volumes that have a directory on the host. */
function volumeDirs(): string[] {
  const root = path.join(server.dataDir, "volumes");
  return readdirSync(root).flatMap((org) => readdirSync(path.join(root, org)));
}

const fieldsOf = (body: ErrorBody) => (body.error.details?.fields ?? []).map((f) => f.field);

describe("volume API", () => {
  it("creates, lists, gets and refuses duplicate or invalid names", async () => {
    const created = await api.post<VolumeBody>("/v1/volumes", { name: "crud-vol" });
    expect(created.status).toBe(201);
    expect(created.headers.get("location")).toBe("/v1/volumes/crud-vol");
    expect(created.body).toMatchObject({ name: "crud-vol", sizeMb: 1024, mountedBy: [] });
    expect(created.body.id).toMatch(/^vol_[a-z2-7]{20}$/);

    const dup = await api.post<ErrorBody>("/v1/volumes", { name: "crud-vol", sizeMb: 128 });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("conflict");

    for (const name of ["Crud", "-lead", "trail-", "under_score", "a".repeat(64), "", "dot.ted"]) {
      const bad = await api.post<ErrorBody>("/v1/volumes", { name });
      expect(bad.status, name).toBe(400);
      expect(fieldsOf(bad.body)).toContain("name");
    }
    const tooSmall = await api.post<ErrorBody>("/v1/volumes", { name: "tiny", sizeMb: 1 });
    expect(tooSmall.status).toBe(400);
    expect(fieldsOf(tooSmall.body)).toContain("sizeMb");

    const list = await api.get<{ volumes: VolumeBody[] }>("/v1/volumes");
    expect(list.body.volumes.map((v) => v.name)).toContain("crud-vol");
    const one = await api.get<VolumeBody>("/v1/volumes/crud-vol");
    expect(one.body).toMatchObject({ id: created.body.id, name: "crud-vol" });
    expect((await api.get<ErrorBody>("/v1/volumes/nope")).body.error.code).toBe("volume_not_found");

    expect((await api.del("/v1/volumes/crud-vol")).status).toBe(204);
    expect((await api.get("/v1/volumes/crud-vol")).status).toBe(404);
    expect((await api.del("/v1/volumes/crud-vol")).status).toBe(404);
    // Its disk is gone from the host.
    expect(volumeDirs()).not.toContain(created.body.id);
  });

  it("validates mounts and names the field", async () => {
    await createVolume("checks");
    const cases: [Record<string, unknown>[], string][] = [
      [[{ name: "checks", mountPath: "/" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "relative" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/proc" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/sys/x" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/dev/shm" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/a/../etc" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/data/" }], "volumes.0.mountPath"],
      [[{ name: "checks", mountPath: "/data", subPath: "../up" }], "volumes.0.subPath"],
      [[{ name: "checks", mountPath: "/data", subPath: "/abs" }], "volumes.0.subPath"],
      [[{ name: "checks", hostPath: allowedDir, mountPath: "/data" }], "volumes.0.name"],
      [[{ mountPath: "/data" }], "volumes.0.name"],
      [[{ name: "Bad", mountPath: "/data" }], "volumes.0.name"],
      [
        [
          { name: "checks", mountPath: "/data" },
          { name: "checks", mountPath: "/data" },
        ],
        "volumes",
      ],
    ];
    for (const [volumes, field] of cases) {
      const res = await createFails({ volumes });
      expect(res.status, JSON.stringify(volumes)).toBe(400);
      expect(fieldsOf(res.body), JSON.stringify(volumes)).toContain(field);
    }
    const missing = await createFails({
      volumes: [
        { name: "checks", mountPath: "/a" },
        { name: "ghost", mountPath: "/b" },
      ],
    });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("volume_not_found");
    expect(fieldsOf(missing.body)).toEqual(["volumes.1.name"]);
    expect(missing.body.error.message).toContain("volumes.1.name");
  });
});

describe("named volumes in sandboxes", () => {
  it("is shared by two sandboxes, outlives them, and refuses deletion while mounted", async () => {
    const volume = await createVolume("shared");
    const [a, b] = await Promise.all([
      createSandbox({ volumes: [{ name: "shared", mountPath: "/data" }] }),
      createSandbox({ volumes: [{ name: "shared", mountPath: "/mnt/shared" }] }),
    ]);
    expect(a.volumes).toEqual([{ name: "shared", mountPath: "/data", readOnly: false }]);

    await sh(a.id, "echo hello from a > /data/note.txt && mkdir -p /data/dir && echo x > /data/dir/f");
    expect((await sh(b.id, "cat /mnt/shared/note.txt")).out).toBe("hello from a");
    await sh(b.id, "echo reply from b >> /mnt/shared/note.txt");
    expect((await sh(a.id, "cat /data/note.txt")).out).toBe("hello from a\nreply from b");
    // The file API goes through the same mount.
    expect(
      (await api.put(`/v1/sandboxes/${b.id}/files?path=/mnt/shared/uploaded.bin`, "via the file API")).status,
    ).toBe(201);
    expect((await sh(a.id, "cat /data/uploaded.bin")).out).toBe("via the file API");

    const inUse = await api.get<VolumeBody>("/v1/volumes/shared");
    expect(inUse.body.mountedBy.sort()).toEqual([a.id, b.id].sort());
    expect(inUse.body.usedBytes).toBeGreaterThan(0);
    const refused = await api.del<ErrorBody>("/v1/volumes/shared");
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("volume_in_use");
    expect(refused.body.error.message).toContain(a.id);

    // Destroyed sandboxes leave the data behind for the next one.
    await destroy(a.id, b.id);
    expect((await api.get<VolumeBody>("/v1/volumes/shared")).body.mountedBy).toEqual([]);
    const c = await createSandbox({ volumes: [{ name: "shared", mountPath: "/srv/again" }] });
    expect((await sh(c.id, "cat /srv/again/note.txt /srv/again/dir/f")).out).toBe("hello from a\nreply from b\nx");
    await destroy(c.id);

    expect(volumeDirs()).toContain(volume.id);
    expect((await api.del("/v1/volumes/shared")).status).toBe(204);
    expect(volumeDirs()).not.toContain(volume.id);
    const leftovers = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .filter((l) => l.includes(volume.id));
    expect(leftovers).toEqual([]);
  });

  it("enforces readOnly inside the sandbox", async () => {
    await createVolume("readonly");
    const writer = await createSandbox({ volumes: [{ name: "readonly", mountPath: "/data" }] });
    await sh(writer.id, "echo original > /data/file.txt");
    const reader = await createSandbox({ volumes: [{ name: "readonly", mountPath: "/data", readOnly: true }] });
    expect(reader.volumes[0]).toMatchObject({ readOnly: true });
    expect((await sh(reader.id, "cat /data/file.txt")).out).toBe("original");
    const write = await sh(reader.id, "echo changed > /data/file.txt");
    expect(write.code).not.toBe(0);
    expect(write.err).toMatch(/Read-only file system|Permission denied/);
    const create = await sh(reader.id, "touch /data/new.txt; mkdir /data/d; rm /data/file.txt; echo $?");
    expect(create.err).toMatch(/Read-only file system|Permission denied/);
    const upload = await api.put(`/v1/sandboxes/${reader.id}/files?path=/data/upload.txt`, "no");
    expect(upload.status).toBeGreaterThanOrEqual(400);
    // Nothing changed, as the writer sees it.
    expect((await sh(writer.id, "cat /data/file.txt; ls /data")).out).toBe("original\nfile.txt");
    await destroy(writer.id, reader.id);
  });

  it("mounts a subPath, creating it when missing", async () => {
    await createVolume("subpaths");
    const one = await createSandbox({
      volumes: [{ name: "subpaths", mountPath: "/workspace/project", subPath: "projects/one" }],
    });
    expect(one.volumes[0]).toMatchObject({ subPath: "projects/one" });
    expect((await sh(one.id, "ls -A /workspace/project | wc -l")).out).toBe("0");
    await sh(one.id, "echo in one > /workspace/project/a.txt");
    const whole = await createSandbox({ volumes: [{ name: "subpaths", mountPath: "/vol" }] });
    expect((await sh(whole.id, "cat /vol/projects/one/a.txt")).out).toBe("in one");
    // The subPath sandbox sees nothing above its directory.
    await sh(whole.id, "echo top > /vol/top.txt");
    expect((await sh(one.id, "ls /workspace/project")).out).toBe("a.txt");
    await destroy(one.id, whole.id);
  });

  it("cannot be led out of the volume by symlinks a sandbox planted in it", async () => {
    await createVolume("attack");
    const attacker = await createSandbox({ volumes: [{ name: "attack", mountPath: "/data" }] });
    await sh(
      attacker.id,
      [
        "ln -s / /data/escape",
        "ln -s /etc /data/etc-link",
        "mkdir -p /data/real",
        "ln -s ../../../../../../.. /data/real/up",
        "echo file > /data/plain-file",
      ].join(" && "),
    );
    // Inside the sandbox the link resolves in the sandbox's own root, as any symlink does.
    expect((await sh(attacker.id, "ls /data/escape/.sandpit")).out).toContain("sandpit-agent");
    for (const subPath of ["escape", "etc-link", "real/up", "real/up/etc", "escape/root"]) {
      const res = await createFails({ volumes: [{ name: "attack", subPath, mountPath: "/mnt/victim" }] });
      expect(res.status, subPath).toBe(400);
      expect(fieldsOf(res.body), subPath).toEqual(["volumes.0.subPath"]);
      expect(res.body.error.message, subPath).toMatch(/symlink/);
    }
    const file = await createFails({ volumes: [{ name: "attack", subPath: "plain-file", mountPath: "/mnt/victim" }] });
    expect(file.status).toBe(400);
    expect(file.body.error.message).toMatch(/not a directory/);
    // The host's root was never exposed: nothing the attacker did reached the host's /etc.
    expect(existsSync("/etc/sandpit-attack")).toBe(false);
    await sh(attacker.id, "echo pwned > /data/escape/etc/sandpit-attack || true");
    expect(existsSync("/etc/sandpit-attack")).toBe(false);
    await destroy(attacker.id);
  });

  it("is invisible to another organisation", async () => {
    await createVolume("private");
    const owner = await createSandbox({ volumes: [{ name: "private", mountPath: "/data" }] });
    await sh(owner.id, "echo mine > /data/secret.txt");

    expect((await other.get<ErrorBody>("/v1/volumes/private")).status).toBe(404);
    expect((await other.get<{ volumes: VolumeBody[] }>("/v1/volumes")).body.volumes).toEqual([]);
    expect((await other.del<ErrorBody>("/v1/volumes/private")).status).toBe(404);
    const mount = await createFails({ volumes: [{ name: "private", mountPath: "/data" }] }, other);
    expect(mount.status).toBe(404);
    expect(mount.body.error.code).toBe("volume_not_found");
    expect(fieldsOf(mount.body)).toEqual(["volumes.0.name"]);

    // Names are per organisation: the other one's "private" is a different, empty volume.
    const theirs = await createVolume("private", {}, other);
    const stranger = await createSandbox({ volumes: [{ name: "private", mountPath: "/data" }] }, other);
    expect((await sh(stranger.id, "ls -A /data | wc -l", other)).out).toBe("0");
    expect(theirs.id).not.toBe((await api.get<VolumeBody>("/v1/volumes/private")).body.id);
    await other.del(`/v1/sandboxes/${stranger.id}`);
    await destroy(owner.id);
  });

  it("enforces sizeMb with ENOSPC while the sandbox keeps working", async () => {
    await createVolume("small", { sizeMb: 64 });
    const sbx = await createSandbox({ volumes: [{ name: "small", mountPath: "/data" }] });
    const fill = await sh(sbx.id, "dd if=/dev/zero of=/data/fill bs=1M count=100 2>&1; echo exit=$?");
    expect(fill.out).toMatch(/No space left on device/);
    expect(fill.out).toMatch(/exit=1/);
    expect(Number((await sh(sbx.id, "du -m /data/fill | cut -f1")).out)).toBeLessThanOrEqual(64);
    expect((await sh(sbx.id, "echo still here")).out).toBe("still here");
    // The sandbox's own disk is unaffected.
    expect((await sh(sbx.id, "echo fine > /workspace/ok && cat /workspace/ok")).out).toBe("fine");
    const used = (await api.get<VolumeBody>("/v1/volumes/small")).body.usedBytes!;
    expect(used).toBeGreaterThan(50 * 1024 * 1024);
    await sh(sbx.id, "rm /data/fill");
    expect((await sh(sbx.id, "echo fits > /data/again && cat /data/again")).out).toBe("fits");
    await destroy(sbx.id);
  });
});

describe("volumes across pause, snapshots and restarts", () => {
  it("keeps mounts through pause/resume and a server restart", async () => {
    await createVolume("durable");
    const sbx = await createSandbox({ volumes: [{ name: "durable", mountPath: "/data" }] });
    const peer = await createSandbox({ volumes: [{ name: "durable", mountPath: "/data" }] });
    await sh(sbx.id, "echo before > /data/state.txt");
    // A process that holds a file of the volume open across the pause, and a file it has looked at.
    await sh(sbx.id, "echo held > /data/held.txt; cat /data/held.txt");
    const holder = await api.post(`/v1/sandboxes/${sbx.id}/exec`, {
      command: "exec sleep 3600 < /data/held.txt",
      background: true,
    });
    expect(holder.status).toBeLessThan(300);
    expect((await api.post(`/v1/sandboxes/${sbx.id}/pause`)).status).toBe(200);
    // Written while it was paused: seen after resume, also for files it had open.
    await sh(
      peer.id,
      "echo while paused > /data/during.txt; echo grown >> /data/held.txt; echo more >> /data/state.txt",
    );
    expect((await api.post(`/v1/sandboxes/${sbx.id}/resume`)).status).toBe(200);
    expect((await sh(sbx.id, "cat /data/state.txt /data/during.txt /data/held.txt")).out).toBe(
      "before\nmore\nwhile paused\nheld\ngrown",
    );
    const held = await api.get<{ status: string }>(
      `/v1/sandboxes/${sbx.id}/commands/${(holder.body as { commandId: string }).commandId}`,
    );
    expect(held.body.status).toBe("running");
    await sh(sbx.id, "echo after resume > /data/after.txt");
    expect((await sh(peer.id, "cat /data/after.txt")).out).toBe("after resume");

    await server.kill9();
    await server.restart();
    const after = await api.get<VolumesSandbox>(`/v1/sandboxes/${sbx.id}`);
    expect(after.body.status).toBe("running");
    expect(after.body.volumes).toEqual([{ name: "durable", mountPath: "/data", readOnly: false }]);
    expect((await sh(sbx.id, "cat /data/during.txt")).out).toBe("while paused");
    await sh(sbx.id, "echo after restart > /data/restart.txt");
    expect((await sh(peer.id, "cat /data/restart.txt")).out).toBe("after restart");
    expect((await api.del<ErrorBody>("/v1/volumes/durable")).status).toBe(409);
    // A sandbox made after the restart mounts it as well.
    const fresh = await createSandbox({ volumes: [{ name: "durable", mountPath: "/d" }] });
    expect((await sh(fresh.id, "cat /d/restart.txt")).out).toBe("after restart");
    await destroy(sbx.id, peer.id, fresh.id);
  });

  it("gives a snapshot's children the same mounts", async () => {
    await createVolume("snapvol");
    const source = await createSandbox({ volumes: [{ name: "snapvol", mountPath: "/data", subPath: "s" }] });
    await sh(source.id, "echo from source > /data/a.txt");
    const snap = await api.post<{ id: string }>(`/v1/sandboxes/${source.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    const child = await createSandbox({ snapshotId: snap.body.id });
    expect(child.volumes).toEqual([{ name: "snapvol", mountPath: "/data", subPath: "s", readOnly: false }]);
    // The volume is live, not copied: both see each other's writes.
    expect((await sh(child.id, "cat /data/a.txt")).out).toBe("from source");
    await sh(child.id, "echo from child > /data/b.txt");
    expect((await sh(source.id, "cat /data/b.txt")).out).toBe("from child");

    const extra = await createFails({ snapshotId: snap.body.id, volumes: [{ name: "snapvol", mountPath: "/x" }] });
    expect(extra.status).toBe(400);
    expect(fieldsOf(extra.body)).toEqual(["volumes"]);

    // Once the volume is gone, the snapshot's children cannot start.
    await destroy(source.id, child.id);
    expect((await api.del("/v1/volumes/snapvol")).status).toBe(204);
    const orphan = await createFails({ snapshotId: snap.body.id });
    expect(orphan.status).toBe(404);
    expect(orphan.body.error.code).toBe("volume_not_found");
    await api.del(`/v1/snapshots/${snap.body.id}`);
  });
});

describe("host-path volumes", () => {
  it("mounts a directory under an allowed prefix, read-write or read-only", async () => {
    const sbx = await createSandbox({
      volumes: [
        { hostPath: path.join(allowedDir, "project"), mountPath: "/project" },
        { hostPath: allowedDir, mountPath: "/ro", readOnly: true },
      ],
    });
    expect(sbx.volumes[0]).toEqual({
      hostPath: path.join(allowedDir, "project"),
      mountPath: "/project",
      readOnly: false,
    });
    expect((await sh(sbx.id, "cat /project/from-host.txt")).out).toBe("written on the host");
    await sh(sbx.id, "echo from the sandbox > /project/from-sandbox.txt");
    expect(readFileSync(path.join(allowedDir, "project/from-sandbox.txt"), "utf8")).toBe("from the sandbox\n");
    const ro = await sh(sbx.id, "echo no > /ro/x.txt");
    expect(ro.err).toMatch(/Read-only file system|Permission denied/);
    expect(existsSync(path.join(allowedDir, "x.txt"))).toBe(false);
    // A symlink in the allowed tree points at the forbidden one; inside the sandbox it leads nowhere.
    expect((await sh(sbx.id, "cat /ro/way-out/secret.txt")).code).not.toBe(0);
    await destroy(sbx.id);
  });

  it("refuses paths outside the allowed prefixes with 403 naming the field", async () => {
    for (const hostPath of [forbiddenDir, path.join(allowedDir, "way-out"), "/etc", `${allowedDir}-sibling`]) {
      const res = await createFails({ volumes: [{ hostPath, mountPath: "/h" }] });
      if (hostPath === `${allowedDir}-sibling`) {
        expect(res.status).toBe(400);
        continue;
      }
      expect(res.status, hostPath).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
      expect(fieldsOf(res.body)).toEqual(["volumes.0.hostPath"]);
    }
    mkdirSync(`${allowedDir}-sibling`);
    const sibling = await createFails({ volumes: [{ hostPath: `${allowedDir}-sibling`, mountPath: "/h" }] });
    expect(sibling.status).toBe(403);
    const missing = await createFails({ volumes: [{ hostPath: path.join(allowedDir, "nope"), mountPath: "/h" }] });
    expect(missing.status).toBe(400);
    expect(fieldsOf(missing.body)).toEqual(["volumes.0.hostPath"]);
  });

  it("are refused when the server allows none", async () => {
    const plain = await startTestServer();
    try {
      const res = await apiClient(plain).post<ErrorBody>("/v1/sandboxes", {
        volumes: [{ hostPath: allowedDir, mountPath: "/h" }],
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
      expect(fieldsOf(res.body)).toEqual(["volumes.0.hostPath"]);
      expect(res.body.error.message).toContain("SANDPIT_HOST_VOLUME_PATHS");
    } finally {
      await plain.close();
    }
  });
});

describe("SDK and CLI", () => {
  it("Volumes in the SDK, and Sandbox.create with volumes", async () => {
    const connection = { apiUrl: server.url, apiKey: server.apiKey };
    const volume = await Volumes.create({ name: "sdk-vol", sizeMb: 128 }, connection);
    expect(volume).toMatchObject({ name: "sdk-vol", sizeMb: 128, mountedBy: [] });
    expect((await Volumes.list(connection)).map((v) => v.name)).toContain("sdk-vol");
    const sandbox = await Sandbox.create({ volumes: [{ name: "sdk-vol", mountPath: "/v" }] }, connection);
    try {
      await sandbox.commands.run("echo via sdk > /v/f.txt");
      expect((await Volumes.get("sdk-vol", connection)).mountedBy).toEqual([sandbox.id]);
      const inUse = await Volumes.delete("sdk-vol", connection).catch((e: unknown) => e);
      expect(inUse).toBeInstanceOf(ConflictError);
      expect((inUse as ConflictError).code).toBe("volume_in_use");
    } finally {
      await sandbox.kill();
    }
    await Volumes.delete("sdk-vol", connection);
    expect(await Volumes.get("sdk-vol", connection).catch((e: unknown) => e)).toBeInstanceOf(NotFoundError);
  });

  it("sandpit volumes create|ls|rm and create --volume", async () => {
    const cli = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await run(
          process.execPath,
          [path.join(repoRoot, "packages/cli/dist/main.js"), ...args],
          {
            env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
          },
        );
        return { code: 0, stdout, stderr };
      } catch (e) {
        const failed = e as { code: number; stdout: string; stderr: string };
        return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
      }
    };
    expect(await cli("volumes", "create", "cli-vol", "--size", "256")).toMatchObject({ code: 0, stdout: "cli-vol\n" });
    const ls = await cli("volumes", "ls");
    expect(ls.stdout).toMatch(/^NAME\s+SIZE\s+USED\s+MOUNTED BY/);
    expect(ls.stdout).toMatch(/cli-vol\s+256 MiB/);
    const created = await cli("create", "--volume", "cli-vol:/data", "--volume", "cli-vol/sub:/sub:ro", "--json");
    expect(created.code).toBe(0);
    const sandbox = JSON.parse(created.stdout) as { id: string };
    const info = await api.get<VolumesSandbox>(`/v1/sandboxes/${sandbox.id}`);
    expect(info.body.volumes).toEqual([
      { name: "cli-vol", mountPath: "/data", readOnly: false },
      { name: "cli-vol", mountPath: "/sub", subPath: "sub", readOnly: true },
    ]);
    await sh(sandbox.id, "echo x > /data/sub/from-cli");
    expect((await sh(sandbox.id, "cat /sub/from-cli")).out).toBe("x");
    expect((await sh(sandbox.id, "touch /sub/nope")).code).not.toBe(0);
    const busy = await cli("volumes", "rm", "cli-vol");
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain("volume_in_use");
    const bad = await cli("create", "--volume", "cli-vol");
    expect(bad.code).toBe(2);
    await destroy(sandbox.id);
    expect((await cli("volumes", "rm", "cli-vol")).code).toBe(0);
    expect((await cli("volumes", "ls")).stdout).not.toContain("cli-vol");
  });
});
