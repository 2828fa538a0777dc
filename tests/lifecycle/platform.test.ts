import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { apiClient } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer(
  (s, a) => {
    server = s;
    api = a;
  },
  { SANDPIT_PLATFORM: "ptrace" },
);

/** argv of the live runsc processes of this server's containers (they all name its state directory). */
function runscArgvs(): string[][] {
  const root = `--root=${path.join(server.dataDir, "runsc")}`;
  const argvs: string[][] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean);
    } catch {
      continue;
    }
    if (argv.includes(root)) argvs.push(argv);
  }
  return argvs;
}

describe("SANDPIT_PLATFORM", () => {
  it("runs the server's sandboxes on the platform it names (ptrace), through create, exec, pause and resume", async () => {
    const s = await api.createSandbox({});
    const sandboxProcess = () => runscArgvs().find((argv) => argv.includes("boot") && argv.at(-1)?.startsWith(s.id));
    expect(sandboxProcess()).toContain("--platform=ptrace");
    expect((await api.exec(s.id, { command: "echo hi" })).stdout).toBe("hi\n");
    expect((await api.post(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
    expect((await api.post(`/v1/sandboxes/${s.id}/resume`)).status).toBe(200);
    expect(sandboxProcess()).toContain("--platform=ptrace");
    expect(runscArgvs().some((argv) => argv.includes("--platform=systrap"))).toBe(false);
    expect((await api.exec(s.id, { command: "echo again" })).stdout).toBe("again\n");
  });
});
