import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runsc } from "../../packages/server/src/runtime/runsc.js";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  server = s;
  api = a;
});

/** The agent token the server keeps for a sandbox (never handed to clients). */
function agentTokenOf(sandboxId: string): string {
  const db = new Database(path.join(server.dataDir, "sandpit.db"), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT agent_token FROM sandboxes WHERE id = ?").get(sandboxId) as { agent_token: string };
    return row.agent_token;
  } finally {
    db.close();
  }
}

const reversed = (s: string) => [...s].reverse().join("");

/**
 * A shell prelude that puts the token in the shell variable T without the token ever being in any
 * process's argv or environment: the command carries it reversed, and `rev` writes it to the shell.
 */
const withToken = (token: string) => `T=$(printf '%s' '${reversed(token)}' | rev); `;

async function run(sandboxId: string, command: string, user: string, timeoutMs = 60_000) {
  return api.exec(sandboxId, { command, user, timeoutMs });
}

describe("secrets that authenticate the control plane are not readable inside the sandbox", () => {
  let sandbox: SandboxBody;
  let token: string;

  beforeAll(async () => {
    sandbox = await api.createSandbox({});
    token = agentTokenOf(sandbox.id);
    expect(token.length).toBeGreaterThan(16);
  });
  afterAll(async () => {
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  });

  for (const user of ["1000", "root"]) {
    it(`no process's environ or cmdline shows the agent token (as ${user})`, async () => {
      // Pure shell: no child process carries the token while /proc is read.
      const script = `${withToken(token)}
        found=0
        for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
          content=$(tr '\\0' '\\n' < "$f" 2>/dev/null) || continue
          case "$content" in *"$T"*) echo "LEAK $f"; found=1;; esac
        done
        echo "checked $(ls -d /proc/[0-9]* | wc -l) processes"`;
      const r = await run(sandbox.id, script, user);
      expect(r.stdout).not.toContain("LEAK");
      expect(r.stdout).toMatch(/checked [1-9][0-9]* processes/);
    });

    it(`the agent's memory cannot be opened, and its environment holds no token (as ${user})`, async () => {
      const r = await run(
        sandbox.id,
        `${withToken(token)}
         for f in /proc/1/mem /proc/2/mem; do
           if (exec 3< "$f") 2>/dev/null; then echo "OPENED $f"; else echo "denied $f"; fi
         done
         env1=$(tr '\\0' '\\n' < /proc/1/environ 2>/dev/null)
         case "$env1" in *"$T"*) echo LEAK;; esac`,
        user,
      );
      expect(r.stdout).toContain("denied /proc/1/mem");
      expect(r.stdout).toContain("denied /proc/2/mem");
      expect(r.stdout).not.toContain("OPENED");
      expect(r.stdout).not.toContain("LEAK");
    });

    it(`no file the sandbox can read contains the agent token (as ${user})`, async () => {
      const r = await run(
        sandbox.id,
        `${withToken(token)} printf '%s\\n' "$T" | grep -rlsF -f - / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev | sed 's/^/LEAK /'; echo searched`,
        user,
        120_000,
      );
      expect(r.stdout).not.toContain("LEAK");
      expect(r.stdout).toContain("searched");
    });
  }

  it("commands inherit neither the token nor any agent variable or extra fd", async () => {
    const r = await run(sandbox.id, "env; ls /proc/self/fd", "root");
    expect(r.stdout).not.toContain("SANDPIT_AGENT");
    expect(r.stdout).not.toContain(token);
    // stdin, stdout, stderr and the fd of `ls` reading the directory
    expect(r.stdout.trim().split("\n").slice(-4)).toEqual(["0", "1", "2", "3"]);
  });
});

describe("client-held sandbox tokens are scoped to one sandbox and derive from a server secret", () => {
  const created: string[] = [];
  afterAll(async () => {
    await Promise.all(created.map((id) => api.del(`/v1/sandboxes/${id}`)));
  });

  async function envdTokenOf(id: string): Promise<string> {
    const res = await fetch(`${server.url}/e2b/sandboxes/${id}`, { headers: { "x-api-key": server.apiKey } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { envdAccessToken: string }).envdAccessToken;
  }

  /** `/etc/shadow` through envd as root, the read the attacker made. */
  const readShadow = (sandboxId: string, accessToken: string) =>
    fetch(`${server.url}/e2b/envd/files?path=/etc/shadow`, {
      headers: {
        "e2b-sandbox-id": sandboxId,
        "x-access-token": accessToken,
        authorization: `Basic ${Buffer.from("root:").toString("base64")}`,
      },
    }).then((r) => r.status);

  it("sandbox A's envd token does not open B, nor A's fork; the fork has its own", async () => {
    const [a, b] = await Promise.all([api.createSandbox({}), api.createSandbox({})]);
    created.push(a.id, b.id);
    const tokenA = await envdTokenOf(a.id);
    expect(await readShadow(a.id, tokenA)).toBe(200);
    expect(await readShadow(b.id, tokenA)).toBe(401);

    const forked = await api.post<{ sandboxes: SandboxBody[] }>(`/v1/sandboxes/${a.id}/fork`, { count: 1 });
    expect(forked.status).toBe(201);
    const child = forked.body.sandboxes[0]!;
    created.push(child.id);
    // The child continues A's memory, agent token included: its client token must not follow.
    expect(agentTokenOf(child.id)).toBe(agentTokenOf(a.id));
    const tokenChild = await envdTokenOf(child.id);
    expect(tokenChild).not.toBe(tokenA);
    expect(await readShadow(child.id, tokenA)).toBe(401);
    expect(await readShadow(child.id, tokenChild)).toBe(200);
    expect(await readShadow(a.id, tokenChild)).toBe(401);
  });

  it("the envd token cannot be computed from the agent token and the sandbox id", async () => {
    const sandbox = await api.createSandbox({});
    created.push(sandbox.id);
    const token = await envdTokenOf(sandbox.id);
    const agentToken = agentTokenOf(sandbox.id);
    const { createHash } = await import("node:crypto");
    // What a sandbox knew of before (its agent token was readable inside): no hash of it gives the token.
    for (const message of [`e2b-envd:${sandbox.id}:${agentToken}`, `${sandbox.id}:${agentToken}`, `${agentToken}`]) {
      expect(createHash("sha256").update(message).digest("base64url")).not.toBe(token);
    }
    // The server's key stays on the host: 0600 in the data directory, not under the sandbox's root.
    const { statSync } = await import("node:fs");
    expect(statSync(path.join(server.dataDir, "sandbox-client-token.key")).mode & 0o777).toBe(0o600);
    const inside = await api.exec(sandbox.id, {
      command: "find / -name 'sandbox-client-token.key' -not -path '/proc/*' 2>/dev/null | wc -l",
      user: "root",
      timeoutMs: 60_000,
    });
    expect(inside.stdout.trim()).toBe("0");
  });
});

describe("a sandbox survives what its own processes do to the agent", () => {
  let sandbox: SandboxBody;
  beforeAll(async () => {
    sandbox = await api.createSandbox({});
  });
  afterAll(async () => {
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  });

  const stillRunning = async () => {
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`)).body.status).toBe("running");
    expect((await api.exec(sandbox.id, { command: "echo alive" })).stdout).toBe("alive\n");
  };

  it("commands run without CAP_SYS_ADMIN, even as root", async () => {
    const r = await api.exec(sandbox.id, {
      command: "grep CapBnd /proc/self/status; mount -t tmpfs none /mnt; echo rc=$?",
      user: "root",
    });
    const bounding = BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(r.stdout)![1]}`);
    expect(bounding & (1n << 21n)).toBe(0n);
    expect(r.stdout).not.toContain("rc=0");
  });

  it("the runsc exec fallback runs commands without CAP_SYS_ADMIN either", async () => {
    const runsc = new Runsc("runsc", path.join(server.dataDir, "runsc"));
    const r = await runsc.exec(sandbox.id, ["sh", "-c", "grep CapBnd /proc/self/status"]);
    const bounding = BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(r.stdout)![1]}`);
    expect(bounding & (1n << 21n)).toBe(0n);
  });

  it("an exec that kills the agent's server answers a clear error, and the next exec works", async () => {
    const killed = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "kill -9 $PPID; sleep 5",
      user: "root",
    });
    expect(killed.status).toBe(502);
    expect(killed.body.error.code).toBe("upstream_unavailable");
    expect(killed.body.error.message).toContain("went away");
    await waitFor(
      async () =>
        (await api.post(`/v1/sandboxes/${sandbox.id}/exec`, { command: "true" })).status === 200 ? true : undefined,
      15_000,
      "the agent's server to come back",
    );
    await stillRunning();
  });

  it("kill -9 1 as root ends the guest's processes, not the sandbox", async () => {
    const before = await api.exec(sandbox.id, {
      command: "echo kept > /workspace/kept.txt; ps -o pid= -p 1",
      user: "root",
    });
    expect(before.exitCode).toBe(0);
    const killed = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "kill -9 1; sleep 5",
      user: "root",
    });
    expect(killed.status).toBe(502);
    await waitFor(
      async () =>
        (await api.post(`/v1/sandboxes/${sandbox.id}/exec`, { command: "true" })).status === 200 ? true : undefined,
      15_000,
      "the guest to start again",
    );
    await stillRunning();
    expect((await api.exec(sandbox.id, { command: "cat /workspace/kept.txt" })).stdout).toBe("kept\n");
  });
});
