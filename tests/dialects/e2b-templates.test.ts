// E2B's template builds, template listing and sandbox logs, driven by the official `e2b` SDK
// (`Template.build`) and the official `@e2b/cli` (`e2b template list/delete`, `e2b sandbox logs`) as a
// process, configured only by E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL, against Sandpit.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { BuildError, type LogEntry, Sandbox, Template } from "e2b";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

const saved = { ...process.env };
const created: Sandbox[] = [];
let contextDir: string;

/** The E2B CLI as a user runs it, with this suite's E2B environment. */
async function e2bCli(...args: string[]) {
  const cli = path.join(repoRoot, "node_modules/@e2b/cli/dist/index.js");
  const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args], {
    env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" },
    timeout: 60_000,
  });
  return stdout;
}

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "e2b-builders", format: "e2b" });
  process.env.E2B_API_KEY = key;
  process.env.E2B_API_URL = `${server.url}/e2b`;
  process.env.E2B_SANDBOX_URL = `${server.url}/e2b/envd`;
  contextDir = await mkdtemp(path.join(os.tmpdir(), "e2b-template-context-"));
  await writeFile(path.join(contextDir, "hello.txt"), "hello from the build context\n");
});

afterAll(async () => {
  await Promise.all(created.map((s) => s.kill().catch(() => undefined)));
  await rm(contextDir, { recursive: true, force: true });
  process.env = saved;
});

describe("e2b Template.build", () => {
  it("builds a template from base with a command, an env and a copied file; sandboxes start from it", async () => {
    const logs: LogEntry[] = [];
    const template = Template({ fileContextPath: contextDir })
      .fromTemplate("base")
      .runCmd("echo built-by-run > built.txt && echo run-step-says-hi")
      .setEnvs({ GREETING: "hello from the template" })
      .copy("hello.txt", "/home/user/copied.txt");
    const info = await Template.build(template, "e2b-built", {
      cpuCount: 1,
      memoryMB: 512,
      onBuildLogs: (entry) => void logs.push(entry),
    });
    expect(info.templateId).toBe("e2b-built");
    const messages = logs.map((l) => l.message);
    // The RUN step's own output came back through the build's status polls.
    expect(messages).toContain("run-step-says-hi");
    expect(messages.some((m) => m.includes("Uploaded 'hello.txt'"))).toBe(true);
    expect(await Template.exists("e2b-built")).toBe(true);
    expect(await Template.exists("never-built")).toBe(false);

    const sandbox = await Sandbox.create("e2b-built", { timeoutMs: 120_000 });
    created.push(sandbox);
    const run = await sandbox.commands.run(
      'cat /home/user/built.txt /home/user/copied.txt; echo "$GREETING"; stat -c %U /home/user/built.txt /home/user/copied.txt',
    );
    expect(run.stdout).toBe("built-by-run\nhello from the build context\nhello from the template\nuser\nuser\n");
  });

  it("reports a failing step as E2B's BuildError with the step's output in the logs", async () => {
    const logs: LogEntry[] = [];
    const template = Template().fromTemplate("base").runCmd("echo about-to-fail; exit 7");
    const failure = await Template.build(template, "e2b-failing", { onBuildLogs: (e) => void logs.push(e) }).catch(
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(BuildError);
    expect((failure as BuildError).message).toMatch(/exited with 7/);
    expect(logs.map((l) => l.message)).toContain("about-to-fail");
  });

  it("refuses what Sandpit cannot build, naming it, in E2B's error shape", async () => {
    const aws = Template().fromAWSRegistry("123.dkr.ecr.eu-west-1.amazonaws.com/app:1", {
      accessKeyId: "a",
      secretAccessKey: "b",
      region: "eu-west-1",
    });
    const refused = await Template.build(aws, "e2b-aws").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BuildError);
    expect((refused as Error).message).toMatch(/fromImageRegistry: aws registries are not supported/);

    // An image no registry here serves: the build itself fails and says which image.
    const missing = Template().fromImage("127.0.0.1:9/nothing/here:1").runCmd("true");
    const failed = await Template.build(missing, "e2b-no-image").catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(BuildError);
    expect((failed as Error).message).toMatch(/127\.0\.0\.1:9\/nothing\/here:1/);
  });
});

describe("e2b CLI", () => {
  it("lists the organisation's templates and built-ins, and deletes its own", async () => {
    const template = Template().fromTemplate("base").runCmd("true");
    await Template.build(template, "e2b-listed");
    const listed = JSON.parse(await e2bCli("template", "list", "--format", "json")) as {
      templateID: string;
      aliases: string[];
      public: boolean;
      buildStatus: string;
    }[];
    const own = listed.find((t) => t.templateID === "e2b-listed");
    expect(own).toMatchObject({ aliases: ["e2b-listed"], public: false, buildStatus: "ready" });
    expect(listed.find((t) => t.templateID === "base")).toMatchObject({ public: true });

    await e2bCli("template", "delete", "e2b-listed", "--yes");
    const after = JSON.parse(await e2bCli("template", "list", "--format", "json")) as { templateID: string }[];
    expect(after.map((t) => t.templateID)).not.toContain("e2b-listed");
    expect(await Template.exists("e2b-listed")).toBe(false);
  });

  it("shows a sandbox's logs: its commands, their exit and its background output, with timestamps", async () => {
    const sandbox = await Sandbox.create("base", { timeoutMs: 120_000 });
    created.push(sandbox);
    await sandbox.commands.run("echo foreground-done");
    const background = await sandbox.commands.run("echo background-line-1; echo background-line-2 >&2", {
      background: true,
    });
    await background.wait();
    const out = await e2bCli("sandbox", "logs", sandbox.sandboxId, "--format", "json");
    const lines = out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { timestamp: string; level: string; message: string; cmd?: string });
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(Number.isNaN(Date.parse(l.timestamp))).toBe(false);
    const messages = lines.map((l) => l.message);
    expect(messages).toContain("background-line-1");
    expect(messages).toContain("background-line-2");
    expect(lines.some((l) => l.message === "process started" && l.cmd?.includes("echo foreground-done"))).toBe(true);
    expect(lines.some((l) => l.message === "process exited")).toBe(true);
    expect(messages).toContain("sandbox.created");
  });
});
