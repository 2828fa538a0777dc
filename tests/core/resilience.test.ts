import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  server = s;
  api = a;
});

const runsc = (...args: string[]) =>
  execFileSync("runsc", [`--root=${path.join(server.dataDir, "runsc")}`, ...args], { encoding: "utf8" });
/** Sandboxes with a runsc container (one resumed in place runs as `<id>.<n>`). */
const containerIds = () =>
  runsc("list", "-quiet")
    .split("\n")
    .filter(Boolean)
    .map((container) => container.replace(/\.\d+$/, ""));

async function statusOf(id: string) {
  return (await api.get<SandboxBody>(`/v1/sandboxes/${id}`)).body;
}

describe("a sandbox that misbehaves does not hurt others", () => {
  it("survives a memory hog and a fork bomb next door, and reports the OOM", async () => {
    const [bystander, hog, bomber] = await Promise.all([
      api.createSandbox({ metadata: { role: "bystander" } }),
      api.createSandbox({ resources: { memoryMb: 256 }, metadata: { role: "hog" } }),
      api.createSandbox({ resources: { memoryMb: 512 }, metadata: { role: "bomber" } }),
    ]);
    try {
      const bomb = api.post(`/v1/sandboxes/${bomber.id}/exec`, {
        command: "bomb() { bomb | bomb & }; bomb",
        timeoutMs: 8000,
      });
      // A process over the limit is killed by the host's OOM killer; its sandbox keeps working.
      const eaten = await api.exec(hog.id, {
        command: "python3 -c 'x = []\nwhile True: x.append(bytearray(16*1024*1024))'",
        timeoutMs: 60_000,
      });
      expect(eaten.exitCode).not.toBe(0);
      expect((await api.exec(hog.id, { command: "echo survived" })).stdout).toBe("survived\n");
      for (let i = 0; i < 5; i++) {
        expect((await api.exec(bystander.id, { command: "echo alive" })).stdout).toBe("alive\n");
      }
      // Memory the kernel cannot take back from a process (tmpfs lives in the sandbox's memory) kills
      // the whole sandbox: it is reported as an OOM, and calls on it answer 409 at once.
      const filled = await api.post<ErrorBody>(`/v1/sandboxes/${hog.id}/exec`, {
        command: "head -c 400000000 /dev/zero > /tmp/fill",
        timeoutMs: 60_000,
      });
      expect(filled.status).toBe(409);
      expect(filled.body.error.code).toBe("sandbox_failed");
      const hogState = await statusOf(hog.id);
      expect(hogState).toMatchObject({ status: "error", reason: "oom" });
      const refused = await api.post<ErrorBody>(`/v1/sandboxes/${hog.id}/exec`, { command: "true" });
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe("sandbox_failed");
      expect(refused.body.error.message).toContain("oom");
      expect(containerIds()).not.toContain(hog.id);

      await bomb;
      expect((await api.exec(bystander.id, { command: "echo still alive" })).stdout).toBe("still alive\n");
    } finally {
      await Promise.all([bystander, hog, bomber].map((s) => api.del(`/v1/sandboxes/${s.id}`)));
    }
  });

  it("kills the process over the limit, not the sandbox whose files in /tmp hold memory too", async () => {
    const sandbox = await api.createSandbox({ resources: { memoryMb: 256 } });
    const hog = "python3 -c 'x = []\nwhile True: x.append(bytearray(16*1024*1024))'";
    try {
      // /tmp lives in the sandbox's memory: 100 of its 256 MB are the user's files.
      await api.exec(sandbox.id, { command: "head -c 100000000 /dev/zero > /tmp/keep" });
      expect((await api.exec(sandbox.id, { command: hog, timeoutMs: 60_000 })).exitCode).not.toBe(0);
      expect((await api.exec(sandbox.id, { command: "stat -c %s /tmp/keep" })).stdout).toBe("100000000\n");
      // The same after a restore (a resumed sandbox is a new gVisor process).
      expect((await api.post(`/v1/sandboxes/${sandbox.id}/pause`)).status).toBe(200);
      expect((await api.post(`/v1/sandboxes/${sandbox.id}/resume`)).status).toBe(200);
      expect((await api.exec(sandbox.id, { command: hog, timeoutMs: 60_000 })).exitCode).not.toBe(0);
      expect((await api.exec(sandbox.id, { command: "stat -c %s /tmp/keep" })).stdout).toBe("100000000\n");
      expect((await statusOf(sandbox.id)).status).toBe("running");
    } finally {
      await api.del(`/v1/sandboxes/${sandbox.id}`);
    }
  });

  it("reports a sandbox whose gVisor process was killed as crashed", async () => {
    const victim = await api.createSandbox();
    const { pid } = JSON.parse(runsc("state", victim.id)) as { pid: number };
    process.kill(pid, "SIGKILL");
    const failed = await waitFor(
      async () => {
        const s = await statusOf(victim.id);
        return s.status === "error" ? s : undefined;
      },
      15_000,
      "the sandbox to be marked as crashed",
    );
    expect(failed.reason).toBe("crashed");
    const res = await api.post<ErrorBody>(`/v1/sandboxes/${victim.id}/exec`, { command: "true" });
    expect(res.status).toBe(409);
    expect(containerIds()).not.toContain(victim.id);
  });
});

describe("the server can crash", () => {
  it("keeps every sandbox after kill -9, cleans up unknown containers and expires while down", async () => {
    const keeper = await api.createSandbox({ metadata: { role: "keeper" }, timeoutMs: 600_000 });
    await api.put(`/v1/sandboxes/${keeper.id}/files?path=/workspace/state.txt`, "kept");
    const bg = await api.post<{ commandId: string }>(`/v1/sandboxes/${keeper.id}/exec`, {
      command: "sleep 900",
      background: true,
    });
    const orphan = await api.createSandbox({ metadata: { role: "orphan" } });
    const shortLived = await api.createSandbox({ metadata: { role: "short" }, timeoutMs: 3000 });
    const before = (await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes")).body.sandboxes.length;

    await server.kill9();
    // While the server is down: the short-lived sandbox expires, and one record disappears.
    execFileSync("sqlite3", [
      path.join(server.dataDir, "sandpit.db"),
      `DELETE FROM sandboxes WHERE id = '${orphan.id}'`,
    ]);
    expect(containerIds()).toEqual(expect.arrayContaining([keeper.id, shortLived.id, orphan.id]));
    await new Promise((r) => setTimeout(r, 3500));
    await server.restart();

    const after = (await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes")).body.sandboxes;
    expect(after.filter((s) => s.id === keeper.id)).toHaveLength(1);
    expect((await statusOf(keeper.id)).status).toBe("running");
    const read = await api.get<Buffer>(`/v1/sandboxes/${keeper.id}/files?path=/workspace/state.txt`);
    expect(read.body.toString()).toBe("kept");
    const ps = await api.exec(keeper.id, { command: "ps -eo args | grep -c '^sleep 900'" });
    expect(ps.stdout.trim()).toBe("1");
    const cmd = await api.get<{ status: string }>(`/v1/sandboxes/${keeper.id}/commands/${bg.body.commandId}`);
    expect(cmd.body.status).toBe("running");

    const expired = await waitFor(
      async () => {
        const s = await statusOf(shortLived.id);
        return s.status === "destroyed" ? s : undefined;
      },
      10_000,
      "the expired sandbox to be destroyed",
    );
    expect(expired.reason).toBe("expired");
    expect(containerIds()).not.toContain(orphan.id);
    expect(containerIds()).not.toContain(shortLived.id);
    expect(after.length).toBeLessThanOrEqual(before);
    const netns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    const ours = netns.split("\n").filter((l) => l.startsWith(`${server.netPrefix}-sandbox-`));
    expect(ours).toHaveLength(1);
  });
});
