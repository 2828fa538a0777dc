import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { keeperState, startKeeper } from "../helpers/memory-keeper.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  server = s;
  api = a;
});

const state = (id: string) => keeperState(api, id);

describe("pause and resume", () => {
  it("keeps a process's memory across two pauses and a server restart, and keeps servers listening", async () => {
    const s = await api.createSandbox({ timeoutMs: 600_000 });
    await startKeeper(api, s.id);
    await api.post(`/v1/sandboxes/${s.id}/exec`, {
      command: "python3 -m http.server 8000 --bind 127.0.0.1",
      background: true,
    });
    const first = await waitFor(
      async () => {
        const r = await api.exec(s.id, {
          command: "cat /tmp/state 2>/dev/null; curl -s -o /dev/null -w ' %{http_code}' http://127.0.0.1:8000/",
        });
        return r.stdout.endsWith(" 200") && r.stdout.split(" ").length === 4 ? true : undefined;
      },
      20_000,
      "the processes to start",
    );
    expect(first).toBe(true);
    const before = await state(s.id);

    for (let round = 0; round < 2; round++) {
      const paused = await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/pause`);
      expect(paused.status).toBe(200);
      expect(paused.body.status).toBe("paused");
      expect(paused.body.expiresAt).toBeNull();
      const refused = await api.post<ErrorBody>(`/v1/sandboxes/${s.id}/exec`, { command: "true" });
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe("invalid_state");
      expect(refused.body.error.message).toContain("paused");
      if (round === 0) {
        // The server goes down while the sandbox is paused; the paused sandbox is still there after.
        await server.kill9();
        await server.restart();
        expect((await api.get<SandboxBody>(`/v1/sandboxes/${s.id}`)).body.status).toBe("paused");
      }
      await new Promise((r) => setTimeout(r, 500));
      const resumed = await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/resume`);
      expect(resumed.status).toBe(200);
      expect(resumed.body.status).toBe("running");
      expect(resumed.body.expiresAt).not.toBeNull();
      const after = await state(s.id);
      expect(after.pid).toBe(before.pid);
      expect(after.token).toBe(before.token);
      await waitFor(async () => ((await state(s.id)).n > after.n ? true : undefined), 5000, "the counter to move");
      const served = await api.exec(s.id, { command: "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/" });
      expect(served.stdout).toBe("200");
    }
    // Resume of a running sandbox is a no-op; `wake` is an alias.
    expect((await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/wake`)).body.status).toBe("running");
    await api.del(`/v1/sandboxes/${s.id}`);
  });

  it("resumes right after a pause, again and again, and leaves no container or cgroup behind", async () => {
    const s = await api.createSandbox({ timeoutMs: 600_000 });
    await startKeeper(api, s.id);
    const before = await state(s.id);
    for (let round = 0; round < 3; round++) {
      expect((await api.post(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
      // At once: an agent that pauses and resumes in a loop does not wait for anything.
      const resumed = await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/resume`);
      expect(resumed.status).toBe(200);
      expect(resumed.body.status).toBe("running");
      const after = await state(s.id);
      expect(after.pid).toBe(before.pid);
      expect(after.token).toBe(before.token);
    }
    // The paused containers are torn down in the background: only the running one stays.
    const containers = () =>
      execFileSync("runsc", [`--root=${path.join(server.dataDir, "runsc")}`, "list", "-quiet"], { encoding: "utf8" })
        .split("\n")
        .filter((c) => c.startsWith(s.id));
    const cgroups = () => readdirSync("/sys/fs/cgroup/memory/sandpit").filter((c) => c.startsWith(s.id));
    await waitFor(async () => (containers().length === 1 ? true : undefined), 30_000, "one container to remain");
    expect(cgroups()).toHaveLength(1);
    expect((await api.del(`/v1/sandboxes/${s.id}`)).status).toBe(204);
    expect(containers()).toEqual([]);
    expect(cgroups()).toEqual([]);
  });

  it("refuses a pause that would kill the sandbox (deleted files still in use on its disk), and pauses once they are let go", async () => {
    const s = await api.createSandbox();
    try {
      // Held open after deletion: on the sandbox's disk (gVisor cannot save it) and in /tmp (in memory: saved).
      const hold = `
import os, signal
disk = open("/workspace/held", "w"); os.unlink("/workspace/held")
mem = open("/tmp/held", "w"); os.unlink("/tmp/held")
signal.signal(signal.SIGUSR1, lambda *_: disk.close())
signal.pause(); signal.pause()`;
      await api.put(`/v1/sandboxes/${s.id}/files?path=/workspace/hold.py`, hold);
      const holder = await api.post<{ pid: number }>(`/v1/sandboxes/${s.id}/exec`, {
        command: "exec python3 /workspace/hold.py",
        background: true,
      });
      // A process working in a directory that was removed.
      const dweller = await api.post<{ pid: number }>(`/v1/sandboxes/${s.id}/exec`, {
        command: "mkdir /workspace/gone && cd /workspace/gone && rmdir /workspace/gone && exec sleep 600",
        background: true,
      });
      await waitFor(
        async () =>
          (await api.exec(s.id, { command: "ls -l /proc/*/fd | grep -c 'held (deleted)'" })).stdout === "2\n"
            ? true
            : undefined,
        20_000,
        "the files to be held",
      );
      const refused = await api.post<ErrorBody>(`/v1/sandboxes/${s.id}/pause`);
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe("invalid_state");
      expect(refused.body.error.message).toMatch(/(python3|sleep) \(pid \d+\) still uses \/workspace\/(held|gone)/);
      expect(refused.body.error.details).toEqual({
        files: expect.arrayContaining([
          { pid: holder.body.pid, command: "python3", path: "/workspace/held" },
          { pid: dweller.body.pid, command: "sleep", path: "/workspace/gone" },
        ]),
      });
      expect((refused.body.error.details as { files: unknown[] }).files).toHaveLength(2);
      expect((await api.get<SandboxBody>(`/v1/sandboxes/${s.id}`)).body.status).toBe("running");
      expect((await api.exec(s.id, { command: "echo alive" })).stdout).toBe("alive\n");

      // The file on disk closed and the dweller gone, the file in /tmp still held: the pause goes through.
      await api.exec(s.id, { command: `kill -USR1 ${holder.body.pid}; kill ${dweller.body.pid}` });
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/resume`)).body.status).toBe("running");
      const fds = await api.exec(s.id, { command: `ls -l /proc/${holder.body.pid}/fd | grep 'held (deleted)'` });
      expect(fds.stdout).toContain("/tmp/held (deleted)");
      expect(fds.stdout).not.toContain("/workspace/held");
    } finally {
      await api.del(`/v1/sandboxes/${s.id}`);
    }
  });

  it("destroys a paused sandbox and refuses to pause one that is not running", async () => {
    const s = await api.createSandbox();
    expect((await api.post(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
    expect((await api.del(`/v1/sandboxes/${s.id}`)).status).toBe(204);
    const destroyed = await api.get<SandboxBody>(`/v1/sandboxes/${s.id}`);
    expect(destroyed.body.status).toBe("destroyed");
    const res = await api.post<ErrorBody>(`/v1/sandboxes/${s.id}/pause`);
    expect(res.status).toBe(409);
    expect(res.body.error.message).toContain("destroyed");
  });
});
