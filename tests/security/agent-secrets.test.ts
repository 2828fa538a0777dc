import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
