import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;

useTestServer((_s, a) => {
  api = a;
});

/**
 * A normal workload must fit whatever process limit a sandbox gets: 100 processes and 300 threads alive
 * at the same time. Each child and thread reports in before any of them is released, so they all exist at
 * once when the counts are taken.
 */
const normalWorkload = `
import subprocess, threading
children = [subprocess.Popen(["sh", "-c", "echo up; read _; exit 0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(100)]
ready = sum(1 for c in children if c.stdout.readline() == b"up\\n")
release = threading.Event()
started = threading.Semaphore(0)
def worker():
    started.release()
    release.wait()
threads = [threading.Thread(target=worker) for _ in range(300)]
for t in threads:
    t.start()
for _ in threads:
    started.acquire()
print(f"processes={ready} threads={threading.active_count() - 1}", flush=True)
release.set()
for t in threads:
    t.join()
for c in children:
    c.stdin.close()
print("exited", sum(1 for c in children if c.wait() == 0))
`;

describe("process limits leave room for a normal workload", () => {
  let sandbox: SandboxBody;

  beforeAll(async () => {
    sandbox = await api.createSandbox({});
  });
  afterAll(async () => {
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  });

  for (const user of ["root", "1000"]) {
    it(`100 processes and 300 threads at once run to the end (as ${user})`, async () => {
      const r = await api.exec(sandbox.id, {
        command: `python3 - <<'PY'\n${normalWorkload}\nPY`,
        user,
        timeoutMs: 120_000,
      });
      expect(r.stderr).toBe("");
      expect(r.stdout).toContain("processes=100 threads=300");
      expect(r.stdout).toContain("exited 100");
      expect(r.exitCode).toBe(0);
      const next = await api.exec(sandbox.id, { command: "echo alive", user, timeoutMs: 30_000 });
      expect(next.stdout).toBe("alive\n");
    });
  }
});

/** Processes of the guest's PID namespace: the guest init, the agent server and the counting shell. */
const countProcesses = "ls -d /proc/[0-9]* | wc -l";

describe("a fork bomb fails and the sandbox lives", () => {
  let sandbox: SandboxBody;

  beforeAll(async () => {
    sandbox = await api.createSandbox({});
  });
  afterAll(async () => {
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  });

  it("commands run in the guarded pids cgroup, and root cannot mount cgroupfs to leave it or raise its limit", async () => {
    const where = await api.exec(sandbox.id, { command: "cat /proc/self/cgroup", timeoutMs: 30_000 });
    expect(where.stdout).toMatch(/pids:\/sandpit-commands$/m);
    const mount = await api.exec(sandbox.id, {
      command: "mkdir -p /tmp/cg && mount -t cgroup -o pids none /tmp/cg",
      timeoutMs: 30_000,
    });
    expect(mount.exitCode).not.toBe(0);
  });

  for (const user of ["root", "1000"]) {
    it(`a bash fork bomb as ${user} is killed, the sandbox stays running and the next exec answers`, async () => {
      const bomb = await api.exec(sandbox.id, {
        // bash, not /bin/sh: in dash `:` stays the special builtin, so the function never runs
        command: "bash -c ':(){ :|:& };:'",
        user,
        timeoutMs: 120_000,
      });
      expect(bomb.timedOut).toBe(false);
      // The guard empties the commands' cgroup: only the agent's own processes remain.
      await waitFor(
        async () => {
          const r = await api.exec(sandbox.id, { command: countProcesses, timeoutMs: 30_000 });
          // a count taken while the guard was still killing may itself be killed: only a finished one counts
          return r.exitCode === 0 && /^\d+\n$/.test(r.stdout) && Number(r.stdout) <= 4 ? true : undefined;
        },
        60_000,
        "the bomb's processes to be gone",
      );
      const state = await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
      expect(state.body.status).toBe("running");
      const next = await api.exec(sandbox.id, { command: "echo alive", user, timeoutMs: 30_000 });
      expect(next.stdout).toBe("alive\n");
      expect(next.exitCode).toBe(0);
    });
  }

  it("after the bombs, 100 processes and 300 threads still run in the same sandbox", async () => {
    const r = await api.exec(sandbox.id, {
      command: `python3 - <<'PY'\n${normalWorkload}\nPY`,
      timeoutMs: 120_000,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("processes=100 threads=300");
    expect(r.stdout).toContain("exited 100");
    const state = await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
    expect(state.body.status).toBe("running");
  });
});
