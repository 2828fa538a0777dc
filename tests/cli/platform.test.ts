// The CLI's lifecycle, snapshot, network and logs commands as processes against a real server: stdout
// (human and --json), stderr, exit codes. One sandbox for the file, plus what fork and snapshots make.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Sandbox } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, cliEntry, runCli } from "../helpers/run-cli.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

const env = () => ({ SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey });
const sandpit = (args: string[], opts?: Parameters<typeof runCli>[2]) => runCli(args, env(), opts);

/** Runs the CLI and fails with its stderr unless it exited 0 and wrote nothing on stderr. */
async function ok(args: string[]): Promise<CliResult> {
  const run = await sandpit(args);
  if (run.code !== 0) throw new Error(`sandpit ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
  expect(run.stderr).toBe("");
  return run;
}

const json = <T>(run: CliResult) => JSON.parse(run.stdout) as T;

let id: string;
const extra: string[] = [];

beforeAll(async () => {
  id = json<{ id: string }>(await ok(["create", "--json", "--timeout", "10m", "--port", "8000"])).id;
});

afterAll(async () => {
  for (const sandboxId of [id, ...extra]) if (sandboxId) await sandpit(["rm", sandboxId]);
});

describe("lifecycle", () => {
  it("pause and resume print the new status, or the sandbox with --json", async () => {
    expect((await ok(["pause", id])).stdout).toBe(`${id} paused\n`);
    expect(json<{ id: string; status: string }>(await ok(["resume", id, "--json"]))).toMatchObject({
      id,
      status: "running",
    });
    const missing = await sandpit(["pause", "sbx_aaaaaaaaaaaaaaaaaaaa"]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe("sandpit: sandbox sbx_aaaaaaaaaaaaaaaaaaaa not found (sandbox_not_found)\n");
    const usage = await sandpit(["resume"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toBe("sandpit: resume: missing ID (usage_error)\n");
  });

  it("fork --count starts the children and lists them", async () => {
    const run = await ok(["fork", id, "--count", "2"]);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATUS$/);
    const children = lines.slice(1).map((line) => line.split(/\s+/));
    extra.push(...children.map(([child]) => child!));
    expect(children).toHaveLength(2);
    for (const [child, status] of children) {
      expect(child).toMatch(/^sbx_[a-z2-7]{20}$/);
      expect(status).toBe("running");
    }
    const bad = await sandpit(["fork", id, "--count", "many"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('sandpit: --count expects a whole number, got "many" (usage_error)\n');
  });

  it("snapshot create, ls and rm, in text and --json", async () => {
    const snapshotId = (await ok(["snapshot", "create", id, "--name", "cli-snap"])).stdout.trim();
    expect(snapshotId).toMatch(/^snp_[a-z2-7]{20}$/);
    const listed = json<{ id: string; name: string; sourceSandboxId: string }[]>(
      await ok(["snapshot", "ls", "--json"]),
    );
    expect(listed).toContainEqual(expect.objectContaining({ id: snapshotId, name: "cli-snap", sourceSandboxId: id }));
    const table = (await ok(["snapshot", "ls"])).stdout.split("\n");
    expect(table[0]).toMatch(/^ID\s+NAME\s+STATUS\s+SOURCE\s+SIZE\s+CREATED$/);
    expect(table.some((line) => line.startsWith(snapshotId) && line.includes("cli-snap"))).toBe(true);
    expect(json(await ok(["snapshot", "rm", snapshotId, "--json"]))).toEqual({ id: snapshotId, deleted: true });
    const gone = await sandpit(["snapshot", "rm", snapshotId]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/\(not_found\)\n$/);
    const missing = await sandpit(["snapshot"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe("sandpit: snapshot: missing subcommand (create, ls, rm) (usage_error)\n");
  });
});

describe("network", () => {
  it("ports lists the exposed ports and their URLs", async () => {
    const text = (await ok(["ports", id])).stdout.split("\n");
    expect(text[0]).toMatch(/^PORT\s+URL\s+HOST URL$/);
    expect(text[1]).toMatch(new RegExp(`^8000\\s+\\S+/v1/sandboxes/${id}/ports/8000`));
    const data = json<{ ports: { port: number }[]; public: boolean }>(await ok(["ports", id, "--json"]));
    expect(data.ports.map((p) => p.port)).toEqual([8000]);
  });

  it("policy replaces the egress policy and names what is wrong with a bad one", async () => {
    const policy = json<{ networkPolicy: unknown }>(
      await ok(["policy", id, "--allow-domain", "example.test", "--deny-cidr", "198.51.100.0/24", "--json"]),
    );
    expect(policy.networkPolicy).toEqual({
      mode: "custom",
      allow: { domains: ["example.test"], cidrs: [], ports: [] },
      deny: { domains: [], cidrs: ["198.51.100.0/24"] },
    });
    const conflicting = await sandpit(["policy", id, "--deny-all", "--allow-domain", "x.test"]);
    expect(conflicting.code).toBe(2);
    expect(conflicting.stderr).toMatch(/exactly one of --allow-all, --deny-all, or allow\/deny rules/);
    const invalid = await sandpit(["policy", id, "--deny-cidr", "not-a-cidr"]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/deny\.cidrs\.0: must be an IPv4 address or CIDR/);
  });

  it("egress-log lists the denied attempt and --follow prints it as it happens", async () => {
    const sandbox = await Sandbox.get(id, { apiUrl: server.url, apiKey: server.apiKey });
    await sandbox.setNetworkPolicy({ mode: "custom", deny: { cidrs: ["198.51.100.0/24"] } });
    // Follow first, then make the attempt: the follower prints it as one JSON line and keeps going until stopped.
    const stop = new AbortController();
    let sawEntry: () => void = () => {};
    const entryPrinted = new Promise<void>((resolve) => {
      sawEntry = resolve;
    });
    const following = sandpit(["egress-log", id, "--follow", "--denied", "--json"], {
      signal: stop.signal,
      onStdout: (soFar) => {
        if (soFar.includes("198.51.100.7")) sawEntry();
      },
    });
    await ok(["exec", id, "--", "sh", "-c", "curl -s -m 2 http://198.51.100.7/ ; true"]);
    await entryPrinted;
    stop.abort();
    const followed = await following;
    expect(followed.stderr).toBe("");
    const entries = followed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { ip: string; decision: string; rule: string });
    expect(entries.every((e) => e.decision === "denied")).toBe(true);
    expect(entries).toContainEqual(expect.objectContaining({ ip: "198.51.100.7", rule: "deny.cidr" }));

    const listed = json<{ ip: string }[]>(await ok(["egress-log", id, "--denied", "--json"]));
    expect(listed.map((e) => e.ip)).toContain("198.51.100.7");
    const text = (await ok(["egress-log", id, "--denied"])).stdout;
    expect(text).toMatch(/denied {2}tcp {2}198\.51\.100\.7:80 {2}deny\.cidr\n/);
    await ok(["policy", id, "--allow-all"]);
  });
});

describe("logs", () => {
  it("prints a background command's output from its start and exits with its status", async () => {
    const started = await ok([
      "exec",
      id,
      "--json",
      "--background",
      "--",
      "sh",
      "-c",
      "echo out; echo err >&2; exit 4",
    ]);
    const commandId = json<{ commandId: string }>(started).commandId;
    const run = await sandpit(["logs", id, commandId]);
    expect(run).toEqual({ code: 4, stdout: "out\n", stderr: "err\n" });
    const events = (await ok(["logs", id, commandId, "--json"])).stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string });
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["stdout", "stderr", "exit"]));
  });
});

describe("--json on the older commands", () => {
  it("timeout, cp and rm print JSON on stdout", async () => {
    const moved = json<{ id: string; expiresAt: string }>(await ok(["timeout", id, "20m", "--json"]));
    expect(moved.id).toBe(id);
    expect(Date.parse(moved.expiresAt)).toBeGreaterThan(Date.now() + 15 * 60_000);

    const dir = await mkdtemp(path.join(tmpdir(), "sandpit-cli-json-"));
    try {
      await writeFile(path.join(dir, "five.txt"), "12345");
      const copied = await ok(["cp", path.join(dir, "five.txt"), `${id}:/tmp/five.txt`, "--json"]);
      expect(json(copied)).toEqual({ files: 1, bytes: 5, to: `${id}:/tmp/five.txt` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const children = extra.splice(0);
    expect(children.length).toBeGreaterThan(0);
    expect(json(await ok(["rm", ...children, "--json"]))).toEqual(children);
  });
});

describe("progress", () => {
  it("cp draws a progress bar on stderr when it is a terminal, and only its summary otherwise", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sandpit-cli-progress-"));
    try {
      const big = path.join(dir, "big.bin");
      await writeFile(big, randomBytes(3 * 1024 * 1024));
      // `script` gives the CLI a pseudo-terminal; what it draws comes back on script's stdout.
      const inTerminal = (args: string[]) =>
        spawnSync(
          "script",
          ["-qec", [process.execPath, cliEntry, ...args].map((a) => `'${a}'`).join(" "), "/dev/null"],
          { encoding: "utf8", env: { ...process.env, ...env() } },
        );
      const up = inTerminal(["cp", big, `${id}:/tmp/big.bin`]);
      expect(up.status).toBe(0);
      expect(up.stdout).toContain("\r\u001b[2K[");
      expect(up.stdout).toMatch(/\[#+-*\] +\d+% copying: [\d.]+ \w+ of 3\.0 MiB/);
      expect(up.stdout).toContain("100% copying: 3.0 MiB of 3.0 MiB");
      expect(up.stdout).toContain(`Copied 1 file (3.0 MiB) to ${id}:/tmp/big.bin`);
      const down = inTerminal(["cp", `${id}:/tmp/big.bin`, path.join(dir, "back.bin")]);
      expect(down.status).toBe(0);
      expect(down.stdout).toContain("100% copying: 3.0 MiB of 3.0 MiB");

      const plain = await sandpit(["cp", big, `${id}:/tmp/big3.bin`]);
      expect(plain).toEqual({ code: 0, stdout: "", stderr: `Copied 1 file (3.0 MiB) to ${id}:/tmp/big3.bin\n` });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("completion", () => {
  it("generates bash and zsh scripts from the command table that complete commands, subcommands and options", () => {
    const script = spawnSync(process.execPath, [cliEntry, "completion", "bash"], { encoding: "utf8" }).stdout;
    const complete = (line: string) => {
      const words = line.split(" ");
      const out = spawnSync(
        "bash",
        [
          "-c",
          `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _sandpit_complete; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        { encoding: "utf8" },
      );
      return out.stdout.trim().split("\n");
    };
    expect(complete("sandpit sn")).toEqual(["snapshot"]);
    expect(complete("sandpit snapshot ")).toEqual(["create", "ls", "rm"]);
    expect(complete("sandpit egress-log sbx --fo")).toEqual(["--follow"]);
    expect(complete("sandpit fork sbx --c")).toEqual(["--count"]);
    expect(complete("sandpit snapshot create sbx --n")).toEqual(["--name"]);

    const zsh = spawnSync(process.execPath, [cliEntry, "completion", "zsh"], { encoding: "utf8" });
    expect(zsh.status).toBe(0);
    expect(zsh.stdout).toContain("bashcompinit");
    expect(zsh.stdout).toContain("complete -o default -F _sandpit_complete sandpit");
    const fish = spawnSync(process.execPath, [cliEntry, "completion", "fish"], { encoding: "utf8" });
    expect(fish.status).toBe(2);
    expect(fish.stderr).toBe("sandpit: completion: expects one of bash, zsh (usage_error)\n");
  });
});
