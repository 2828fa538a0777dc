import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;
const id = () => sandbox.id;
const q = (p: string) => encodeURIComponent(p);

/** A file on the host that the attacks below try to read or overwrite. */
const hostSecret = "/var/tmp/sandpit-host-secret.txt";

beforeAll(async () => {
  writeFileSync(hostSecret, "host-only secret\n");
  server = await startTestServer();
  api = apiClient(server);
  sandbox = await api.createSandbox();
});

afterAll(async () => {
  await server?.close();
  rmSync(hostSecret, { force: true });
});

describe("files", () => {
  it("writes (creating parents) and reads back binary content", async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const put = await api.put<{ path: string; size: number }>(
      `/v1/sandboxes/${id()}/files?path=${q("/data/deep/x.bin")}`,
      data,
    );
    expect(put.status).toBe(201);
    expect(put.body.size).toBe(data.length);
    const get = await api.get<Buffer>(`/v1/sandboxes/${id()}/files?path=${q("/data/deep/x.bin")}`);
    expect(get.status).toBe(200);
    expect(Buffer.compare(get.body, data)).toBe(0);
    const sum = await api.exec(id(), { command: "sha256sum /data/deep/x.bin | cut -d' ' -f1" });
    const { createHash } = await import("node:crypto");
    expect(sum.stdout.trim()).toBe(createHash("sha256").update(data).digest("hex"));
  });

  it("sets the mode, lists, makes directories and deletes", async () => {
    await api.put(`/v1/sandboxes/${id()}/files?path=${q("/work/run.sh")}&mode=755`, "#!/bin/sh\necho ran\n");
    expect((await api.exec(id(), { command: "/work/run.sh" })).stdout).toBe("ran\n");
    expect((await api.post(`/v1/sandboxes/${id()}/files/mkdir`, { path: "/work/sub/dir" })).status).toBe(201);
    const list = await api.get<{
      entries: { name: string; type: string; size: number; mode: string; mtime: string }[];
    }>(`/v1/sandboxes/${id()}/files/list?path=${q("/work")}`);
    expect(list.body.entries.map((e) => [e.name, e.type])).toEqual([
      ["run.sh", "file"],
      ["sub", "dir"],
    ]);
    const script = list.body.entries[0]!;
    expect(script.mode).toBe("0755");
    expect(script.size).toBe(19);
    expect(Date.parse(script.mtime)).toBeGreaterThan(Date.now() - 600_000);

    const nonEmpty = await api.del<ErrorBody>(`/v1/sandboxes/${id()}/files?path=${q("/work")}`);
    expect(nonEmpty.status).toBe(409);
    expect((await api.del(`/v1/sandboxes/${id()}/files?path=${q("/work")}&recursive=true`)).status).toBe(204);
    const gone = await api.get<ErrorBody>(`/v1/sandboxes/${id()}/files?path=${q("/work/run.sh")}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("file_not_found");
  });

  it("validates paths and refuses uploads over the size limit", async () => {
    const relative = await api.get<ErrorBody>(`/v1/sandboxes/${id()}/files?path=etc/passwd`);
    expect(relative.status).toBe(400);
    expect(relative.body.error.details!.fields![0]!.field).toBe("path");
    const big = Buffer.alloc(100 * 1024 * 1024 + 1);
    const res = await api.put<ErrorBody>(`/v1/sandboxes/${id()}/files?path=/big`, big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("payload_too_large");
  });

  it("cannot escape to the host through .. or symlinks made inside the sandbox", async () => {
    // Traversal resolves inside the sandbox's own root.
    const traversal = await api.get<Buffer | ErrorBody>(
      `/v1/sandboxes/${id()}/files?path=${q(`/../../../../..${hostSecret}`)}`,
    );
    expect(traversal.status).toBe(404);
    // Symlinks created inside point into the sandbox's root, never the host's.
    await api.exec(id(), {
      command: `ln -s ${hostSecret} /tmp/link && ln -s / /tmp/rootlink && ln -s /var/tmp /tmp/dirlink`,
    });
    expect((await api.get(`/v1/sandboxes/${id()}/files?path=${q("/tmp/link")}`)).status).toBe(404);
    expect((await api.get(`/v1/sandboxes/${id()}/files?path=${q(`/tmp/rootlink${hostSecret}`)}`)).status).toBe(404);
    // Writing through a symlink lands inside the sandbox; the host file is untouched.
    const w = await api.put(`/v1/sandboxes/${id()}/files?path=${q("/tmp/dirlink/sandpit-host-secret.txt")}`, "owned");
    expect(w.status).toBe(201);
    expect(readFileSync(hostSecret, "utf8")).toBe("host-only secret\n");
    const inside = await api.exec(id(), { command: `cat ${hostSecret}` });
    expect(inside.stdout).toBe("owned");
    // The host's own files are not there at all.
    expect(existsSync("/etc/hostname")).toBe(true);
    const hostname = await api.get<Buffer>(`/v1/sandboxes/${id()}/files?path=/etc/hostname`);
    expect(hostname.body.toString().trim()).toBe(sandbox.id);
  });
});

type WatchEvent = { type: string; path: string; from?: string; isDir?: boolean };

/** A native watch of a directory: its events as they stream, waiting for one, and stopping it. */
async function watchFiles(dir: string) {
  const abort = new AbortController();
  const res = await fetch(`${server.url}/v1/sandboxes/${id()}/files/watch?path=${q(dir)}&recursive=true`, {
    headers: { authorization: `Bearer ${server.apiKey}` },
    signal: abort.signal,
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/x-ndjson");
  const events: WatchEvent[] = [];
  const reading = (async () => {
    const reader = res.body!.getReader();
    let pending = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        pending += Buffer.from(value).toString();
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) if (line) events.push(JSON.parse(line));
      }
    } catch {
      // aborted at the end of the test
    }
  })();
  const seen = (type: string, path: string) =>
    waitFor(
      async () => (events.some((e) => e.type === type && e.path === path) ? true : undefined),
      10_000,
      `${type} ${path}`,
    );
  const stop = async () => {
    abort.abort();
    await reading;
  };
  return { events, seen, stop };
}

describe("file watch", () => {
  it("streams create, modify, rename and delete events, recursively when asked", async () => {
    await api.exec(id(), { command: "mkdir -p /watched/sub" });
    const { events, seen, stop } = await watchFiles("/watched");
    await seen("ready", "/watched");

    await api.exec(id(), { command: "echo one > /watched/a.txt" });
    await seen("create", "/watched/a.txt");
    await seen("modify", "/watched/a.txt");
    await api.exec(id(), { command: "mv /watched/a.txt /watched/b.txt" });
    await seen("rename", "/watched/b.txt");
    expect(events.find((e) => e.type === "rename")?.from).toBe("/watched/a.txt");
    await api.exec(id(), {
      command: "echo deep > /watched/sub/c.txt && mkdir /watched/new && touch /watched/new/d.txt",
    });
    await seen("create", "/watched/sub/c.txt");
    // A directory made after the watch started is watched too.
    await seen("create", "/watched/new/d.txt");
    expect(events.find((e) => e.path === "/watched/new")?.isDir).toBe(true);
    await api.exec(id(), { command: "rm /watched/b.txt" });
    await seen("delete", "/watched/b.txt");
    await stop();

    const notDir = await api.get<ErrorBody>(`/v1/sandboxes/${id()}/files/watch?path=/etc/hostname`);
    expect(notDir.status).toBe(400);
    const missing = await api.get<ErrorBody>(`/v1/sandboxes/${id()}/files/watch?path=/nope`);
    expect(missing.status).toBe(404);
  });

  it("shows an upload as the user's create and write of the file, nothing of Sandpit's temp file", async () => {
    await api.exec(id(), { command: "mkdir -p /uploads && echo old > /uploads/existing.txt" });
    const { events, seen, stop } = await watchFiles("/uploads");
    await seen("ready", "/uploads");
    const upload = async (path: string, body: string) =>
      expect((await api.put(`/v1/sandboxes/${id()}/files?path=${q(path)}`, Buffer.from(body))).status).toBe(201);
    await upload("/uploads/new.txt", "one");
    await upload("/uploads/existing.txt", "two");
    await upload("/uploads/new.txt", "three");
    // A change made afterwards, once seen, means every event of the uploads has arrived.
    await api.exec(id(), { command: "mkdir /uploads/done" });
    await seen("create", "/uploads/done");
    await stop();
    expect(events.filter((e) => e.type !== "ready" && e.path !== "/uploads/done")).toEqual([
      { type: "create", path: "/uploads/new.txt", isDir: false },
      { type: "modify", path: "/uploads/new.txt", isDir: false },
      { type: "modify", path: "/uploads/existing.txt", isDir: false },
      { type: "modify", path: "/uploads/new.txt", isDir: false },
    ]);
  });
});

describe("disk limit", () => {
  it("gives ENOSPC at diskMb and the sandbox keeps answering", async () => {
    const small = await api.createSandbox({ resources: { diskMb: 512 } });
    const fill = await api.exec(small.id, {
      command: "dd if=/dev/zero of=/workspace/fill bs=1M count=700 2>&1; echo exit=$?",
      timeoutMs: 120_000,
    });
    expect(fill.stdout).toMatch(/No space left on device/);
    expect(fill.stdout).toMatch(/exit=1/);
    const size = await api.exec(small.id, { command: "du -m /workspace/fill | cut -f1" });
    expect(Number(size.stdout)).toBeLessThanOrEqual(512);
    expect((await api.exec(small.id, { command: "echo still here" })).stdout).toBe("still here\n");
    const put = await api.put<ErrorBody>(
      `/v1/sandboxes/${small.id}/files?path=/workspace/more.bin`,
      Buffer.alloc(1024 * 1024),
    );
    expect(put.status).toBe(507);
    expect(put.body.error.code).toBe("insufficient_storage");
    await api.exec(small.id, { command: "rm /workspace/fill" });
    expect((await api.put(`/v1/sandboxes/${small.id}/files?path=/workspace/more.bin`, "fits again")).status).toBe(201);
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${small.id}`)).body.status).toBe("running");
  });
});
