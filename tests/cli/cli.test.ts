// The built CLI as a user runs it (node packages/cli/dist/main.js ...) against a real server.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer } from "../helpers/server.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** When each stdout chunk arrived, in ms after the process started. */
  stdoutTimes: { at: number; data: string }[];
  /** When the process exited, in ms after it started. */
  exitedAt: number;
}

let server: TestServer;
let workDir: string;
const created: string[] = [];

/** Runs the CLI with the test server's URL and key in its environment. */
function sandpit(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [cliEntry, ...args], {
      env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const run: CliRun = { code: null, stdout: "", stderr: "", stdoutTimes: [], exitedAt: 0 };
    child.stdout.on("data", (chunk: Buffer) => {
      run.stdout += chunk.toString();
      run.stdoutTimes.push({ at: Date.now() - started, data: chunk.toString() });
    });
    child.stderr.on("data", (chunk: Buffer) => {
      run.stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      run.code = code;
      run.exitedAt = Date.now() - started;
      resolve(run);
    });
  });
}

/** Runs the CLI and fails with its stderr unless it exited 0. */
async function ok(args: string[]): Promise<CliRun> {
  const run = await sandpit(args);
  if (run.code !== 0) throw new Error(`sandpit ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
  return run;
}

let id: string;

beforeAll(async () => {
  server = await startTestServer();
  workDir = await mkdtemp(path.join(tmpdir(), "sandpit-cli-"));
  const run = await ok(["create", "--json", "--metadata", "suite=cli", "--env", "FROM_CLI=yes", "--timeout", "10m"]);
  id = (JSON.parse(run.stdout) as { id: string }).id;
  created.push(id);
});

afterAll(async () => {
  if (server !== undefined) {
    for (const sandboxId of created) await sandpit(["rm", sandboxId]).catch(() => undefined);
    await server.close();
  }
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe("sandpit CLI", () => {
  it("create --json prints the sandbox", async () => {
    expect(id).toMatch(/^sbx_[a-z2-7]{20}$/);
    const info = await ok(["info", id, "--json"]);
    expect(JSON.parse(info.stdout)).toMatchObject({ id, status: "running", metadata: { suite: "cli" } });
  });

  it("exec streams output live and passes the exit code through", async () => {
    const run = await sandpit(["exec", id, "--", "sh", "-c", "echo first; sleep 1; echo second; echo oops >&2"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("first\nsecond\n");
    expect(run.stderr).toBe("oops\n");
    const first = run.stdoutTimes.find((t) => t.data.includes("first"));
    expect(first).toBeDefined();
    expect(run.exitedAt - first!.at).toBeGreaterThan(600);

    const failing = await sandpit(["exec", id, "--", "sh", "-c", "exit 3"]);
    expect(failing.code).toBe(3);
    expect(failing.stderr).toBe("");

    const env = await ok([
      "exec",
      id,
      "--cwd",
      "/tmp",
      "--env",
      "EXTRA=1",
      "--",
      "sh",
      "-c",
      "pwd; echo $FROM_CLI$EXTRA",
    ]);
    expect(env.stdout).toBe("/tmp\nyes1\n");
  });

  it("cp copies files and directories both ways", async () => {
    const src = path.join(workDir, "project");
    await mkdir(path.join(src, "lib", "deep"), { recursive: true });
    await writeFile(path.join(src, "README.md"), "# project\n");
    await writeFile(path.join(src, "lib", "util.txt"), "util\n");
    await writeFile(path.join(src, "lib", "deep", "data.bin"), Buffer.from([0, 1, 2, 254, 255]));
    await writeFile(path.join(src, "run.sh"), "#!/bin/sh\necho run\n", { mode: 0o755 });

    await ok(["cp", src, `${id}:/tmp/project`]);
    const listing = await ok(["exec", id, "--", "sh", "-c", "cd /tmp/project && find . -type f | sort && ./run.sh"]);
    expect(listing.stdout).toBe("./README.md\n./lib/deep/data.bin\n./lib/util.txt\n./run.sh\nrun\n");

    await ok(["cp", path.join(src, "README.md"), `${id}:/tmp/single.md`]);
    expect((await ok(["exec", id, "--", "cat", "/tmp/single.md"])).stdout).toBe("# project\n");

    await ok(["exec", id, "--", "sh", "-c", "mkdir -p /tmp/made/sub && echo made > /tmp/made/sub/file.txt"]);
    const back = path.join(workDir, "back");
    await ok(["cp", `${id}:/tmp/made`, back]);
    expect(await readFile(path.join(back, "sub", "file.txt"), "utf8")).toBe("made\n");

    const roundTrip = path.join(workDir, "round-trip");
    await ok(["cp", `${id}:/tmp/project`, roundTrip]);
    expect(await readFile(path.join(roundTrip, "lib", "deep", "data.bin"))).toEqual(Buffer.from([0, 1, 2, 254, 255]));
    expect((await stat(path.join(roundTrip, "run.sh"))).mode & 0o777).toBe(0o755);

    await ok(["cp", `${id}:/tmp/single.md`, path.join(workDir, "single.md")]);
    expect(await readFile(path.join(workDir, "single.md"), "utf8")).toBe("# project\n");

    const missing = await sandpit(["cp", `${id}:/tmp/does-not-exist`, workDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^sandpit: .*\(file_not_found\)\n$/);
  });

  it("ls --json lists the sandbox and info prints it", async () => {
    const ls = await ok(["ls", "--json", "--metadata", "suite=cli"]);
    expect((JSON.parse(ls.stdout) as { id: string }[]).map((s) => s.id)).toEqual([id]);
    const table = await ok(["ls"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^ID\s+STATUS/);
    expect(table.stdout).toContain(id);
    const info = await ok(["info", id]);
    expect(info.stdout).toMatch(new RegExp(`^id:\\s+${id}$`, "m"));
    expect(info.stdout).toMatch(/^status:\s+running$/m);
  });

  it("timeout moves the expiry", async () => {
    await ok(["timeout", id, "30m"]);
    const info = JSON.parse((await ok(["info", id, "--json"])).stdout) as { expiresAt: string };
    expect(Date.parse(info.expiresAt) - Date.now()).toBeGreaterThan(29 * 60_000);
  });

  it("rm destroys the sandbox and exec on it then fails with one line", async () => {
    const rm = await ok(["rm", id]);
    expect(rm.stdout).toBe(`${id}\n`);
    const ls = await ok(["ls", "--json", "--metadata", "suite=cli"]);
    expect(JSON.parse(ls.stdout)).toEqual([]);
    const exec = await sandpit(["exec", id, "--", "true"]);
    expect(exec.code).toBe(1);
    expect(exec.stderr).toMatch(/^sandpit: .+ \([a-z_]+\)\n$/);
  });

  it("reports errors on one line with exit status 1, usage errors with 2", async () => {
    const badFlag = await sandpit(["ls", "--bogus"]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stdout).toBe("");
    expect(badFlag.stderr).toMatch(/^sandpit: .*--bogus.*\(usage_error\)\n$/);

    const badDuration = await sandpit(["create", "--timeout", "soon"]);
    expect(badDuration.code).toBe(2);

    const notFound = await sandpit(["info", `sbx_${"a".repeat(20)}`]);
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toMatch(/^sandpit: .+ \(sandbox_not_found\)\n$/);

    const invalid = await sandpit(["create", "--vcpus", "99"]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^sandpit: .*resources\.vcpus.*\(validation_failed\)\n$/);

    const wrongKey = await sandpit(["ls"], { SANDPIT_API_KEY: "sp_wrong" });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/^sandpit: .+ \(unauthorized\)\n$/);
  });

  it("templates build --file builds a Dockerfile with its context, showing build logs, and create uses it", async () => {
    const context = path.join(workDir, "template-context");
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, "hello.txt"), "from the context\n");
    await writeFile(
      path.join(workDir, "Dockerfile"),
      "FROM base\nCOPY hello.txt /opt/hello.txt\nRUN echo cli-build-step && cat /opt/hello.txt\nENV FROM_CLI=yes\n",
    );
    const build = await ok([
      "templates",
      "build",
      "cli-made",
      "--file",
      path.join(workDir, "Dockerfile"),
      "--context",
      context,
    ]);
    expect(build.stdout).toMatch(/^cli-made ready/);
    expect(build.stderr).toContain("cli-build-step");
    const sbx = JSON.parse((await ok(["create", "--template", "cli-made", "--json"])).stdout) as { id: string };
    created.push(sbx.id);
    const run = await ok(["exec", sbx.id, "--", "sh", "-c", "cat /opt/hello.txt; echo $FROM_CLI"]);
    expect(run.stdout).toBe("from the context\nyes\n");
    const ls = JSON.parse((await ok(["templates", "ls", "--json"])).stdout) as { name: string; kind: string }[];
    expect(ls.find((t) => t.name === "cli-made")?.kind).toBe("custom");
    await ok(["templates", "rm", "cli-made"]);
  });
});
