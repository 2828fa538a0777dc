// The official `@daytonaio/sdk`, configured only by DAYTONA_API_URL and DAYTONA_API_KEY, against Sandpit's
// Daytona dialect; plus raw HTTP checks of the error shape.

import {
  type CreateSandboxFromSnapshotParams,
  Daytona,
  DaytonaConnectionError,
  DaytonaFileNotFoundError,
  DaytonaGitBranchNotFoundError,
  DaytonaNotFoundError,
  DaytonaTimeoutError,
  DaytonaValidationError,
  type Sandbox,
} from "@daytonaio/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

const saved = { ...process.env };
let daytona: Daytona;
const created: Sandbox[] = [];

beforeAll(() => {
  process.env.DAYTONA_API_URL = `${server.url}/daytona/api`;
  process.env.DAYTONA_API_KEY = server.apiKey;
  daytona = new Daytona();
});

afterAll(async () => {
  await Promise.all(created.map((s) => daytona.delete(s).catch(() => undefined)));
  await daytona[Symbol.asyncDispose]();
  process.env = saved;
});

async function newSandbox(params: CreateSandboxFromSnapshotParams = {}) {
  const sandbox = await daytona.create(params);
  created.push(sandbox);
  return sandbox;
}

describe("Daytona SDK against Sandpit", () => {
  let sandbox: Sandbox;

  beforeAll(async () => {
    sandbox = await newSandbox({ labels: { team: "a" }, envVars: { GREETING: "hi" } });
  });

  it("creates a started sandbox with its labels and a toolbox proxy URL on this server", async () => {
    expect(sandbox.id).toMatch(/^sbx_/);
    expect(sandbox.state).toBe("started");
    expect(sandbox.labels).toEqual({ team: "a", "code-toolbox-language": "python" });
    expect(sandbox.toolboxProxyUrl).toBe(`${server.url}/daytona/toolbox`);
    const again = await daytona.get(sandbox.id);
    expect(again.state).toBe("started");
  });

  it("runs a command with its exit code, combined output, cwd and environment", async () => {
    const r = await sandbox.process.executeCommand(`sh -c 'echo $GREETING $X; pwd; echo err >&2; exit 3'`, "/tmp", {
      X: "there",
    });
    expect(r.exitCode).toBe(3);
    expect(r.result).toBe("hi there\n/tmp\nerr\n");
  });

  it("uploads, lists, downloads, moves and deletes files", async () => {
    await sandbox.fs.uploadFiles([
      { source: Buffer.from("one"), destination: "/tmp/d/a.txt" },
      { source: Buffer.from("two\n"), destination: "/tmp/d/sub/b.txt" },
    ]);
    await sandbox.fs.uploadFile(Buffer.from("three"), "/tmp/d/c.txt");
    const listed = await sandbox.fs.listFiles("/tmp/d");
    expect(listed.map((f) => [f.name, f.isDir]).sort()).toEqual([
      ["a.txt", false],
      ["c.txt", false],
      ["sub", true],
    ]);
    expect((await sandbox.fs.downloadFile("/tmp/d/sub/b.txt")).toString()).toBe("two\n");
    const both = await sandbox.fs.downloadFiles([{ source: "/tmp/d/a.txt" }, { source: "/tmp/d/missing" }]);
    expect(both[0]!.result?.toString()).toBe("one");
    expect(both[1]!.error).toMatch(/missing/);
    await expect(sandbox.fs.downloadFile("/tmp/d/missing")).rejects.toBeInstanceOf(DaytonaFileNotFoundError);
    await sandbox.fs.createFolder("/tmp/d/new", "755");
    expect((await sandbox.fs.getFileDetails("/tmp/d/new")).isDir).toBe(true);
    await sandbox.fs.moveFiles("/tmp/d/c.txt", "/tmp/d/new/c.txt");
    await sandbox.fs.deleteFile("/tmp/d/a.txt");
    await sandbox.fs.deleteFile("/tmp/d/sub", true);
    expect((await sandbox.fs.listFiles("/tmp/d")).map((f) => f.name)).toEqual(["new"]);
  });

  it("keeps a session's shell state between commands, sync and async", async () => {
    await sandbox.process.createSession("s1");
    const cd = await sandbox.process.executeSessionCommand("s1", { command: "cd /tmp && export V=42" });
    expect(cd.exitCode).toBe(0);
    const echo = await sandbox.process.executeSessionCommand("s1", { command: "echo $V; pwd" });
    expect(echo.stdout).toBe("42\n/tmp\n");
    const failed = await sandbox.process.executeSessionCommand("s1", { command: "false" });
    expect(failed.exitCode).toBe(1);
    const started = await sandbox.process.executeSessionCommand("s1", { command: "echo later", runAsync: true });
    expect(started.cmdId).toBeTruthy();
    let command = await sandbox.process.getSessionCommand("s1", started.cmdId!);
    for (let i = 0; command.exitCode === undefined && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      command = await sandbox.process.getSessionCommand("s1", started.cmdId!);
    }
    expect(command.exitCode).toBe(0);
    expect((await sandbox.process.getSessionCommandLogs("s1", started.cmdId!)).stdout).toBe("later\n");
    expect((await sandbox.process.listSessions()).map((s) => s.sessionId)).toEqual(["s1"]);
    await sandbox.process.deleteSession("s1");
    await expect(sandbox.process.getSession("s1")).rejects.toBeInstanceOf(DaytonaNotFoundError);
  });

  it("runs code in the sandbox's language with argv", async () => {
    const r = await sandbox.process.codeRun("import sys; print(sys.argv[1:])", { argv: ["a", "b"] });
    expect(r.exitCode).toBe(0);
    expect(r.result).toBe("['a', 'b']\n");
  });

  it("works a repository with git: init, add, commit, push, clone, branches, status, pull", async () => {
    const { git } = sandbox;
    await git.init("/tmp/origin.git", true, "main");
    await git.init("work", false, "main"); // relative: from the sandbox's working directory
    await git.configureUser("Ada", "ada@example.com");
    await sandbox.fs.uploadFile(Buffer.from("one\n"), "work/a.txt");
    expect((await git.status("work")).fileStatus).toEqual([
      { name: "a.txt", staging: "Untracked", worktree: "Untracked", extra: "" },
    ]);
    await git.add("work", ["."]);
    expect((await git.status("work")).fileStatus[0]).toMatchObject({ name: "a.txt", staging: "Added" });
    const first = await git.commit("work", "first", "Ada", "ada@example.com");
    expect(first.sha).toMatch(/^[0-9a-f]{40}$/);
    const log = await sandbox.process.executeCommand("git -C work log --format=%H|%an|%s");
    expect(log.result.trim()).toBe(`${first.sha}|Ada|first`);

    await git.remoteAdd("work", "origin", "/tmp/origin.git");
    expect(await git.remoteGet("work", "origin")).toBe("/tmp/origin.git");
    await git.push("work", undefined, undefined, "main", "origin", true);
    await git.clone("/tmp/origin.git", "/tmp/copy");
    expect((await sandbox.fs.downloadFile("/tmp/copy/a.txt")).toString()).toBe("one\n");

    await git.createBranch("work", "feature"); // and switches to it, as Daytona's daemon does
    expect(await git.branches("work")).toEqual({ branches: ["feature", "main"], current: "feature" });
    await git.checkoutBranch("work", "main");
    await sandbox.fs.uploadFile(Buffer.from("two\n"), "work/a.txt");
    const status = await git.status("work");
    expect(status).toMatchObject({ currentBranch: "main", upstream: "origin/main", ahead: 0, behind: 0 });
    expect(status.fileStatus).toEqual([{ name: "a.txt", staging: "Unmodified", worktree: "Modified", extra: "" }]);
    await git.add("work", ["a.txt"]);
    await git.commit("work", "second", "Ada", "ada@example.com");
    expect((await git.status("work")).ahead).toBe(1);
    await git.push("work");
    await git.pull("/tmp/copy");
    expect((await sandbox.fs.downloadFile("/tmp/copy/a.txt")).toString()).toBe("two\n");
    await git.deleteBranch("work", "feature");
    expect((await git.branches("work")).branches).toEqual(["main"]);

    // A git that fails answers 400 with git's own message and the daemon's code for it.
    const error = await git.checkoutBranch("work", "nope").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DaytonaGitBranchNotFoundError);
    expect((error as { statusCode: number }).statusCode).toBe(400);
    expect((error as Error).message).toMatch(/git checkout failed: .*nope/);
  });

  it("replaces labels and lists sandboxes by label", async () => {
    expect(await sandbox.setLabels({ team: "b", env: "dev" })).toEqual({ team: "b", env: "dev" });
    const found: string[] = [];
    for await (const s of daytona.list({ labels: { env: "dev" } })) found.push(s.id);
    expect(found).toEqual([sandbox.id]);
  });

  it("gives a preview link that reaches a server on the port as returned", async () => {
    await sandbox.process.createSession("web");
    await sandbox.process.executeSessionCommand("web", {
      command: "cd /tmp && echo page > index.html && python3 -m http.server 8080",
      runAsync: true,
    });
    const link = await sandbox.getPreviewLink(8080);
    expect(link.token).toBeTruthy();
    let status = 0;
    let body = "";
    for (let i = 0; i < 100 && status !== 200; i++) {
      const res = await fetch(`${link.url.replace(/\?.*/, "")}index.html?${new URL(link.url).searchParams}`);
      status = res.status;
      body = await res.text();
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    expect(body).toBe("page\n");
  });

  it("stops and starts the sandbox, keeping its files", async () => {
    await sandbox.fs.uploadFile(Buffer.from("kept"), "/tmp/kept.txt");
    await sandbox.stop();
    expect(sandbox.state).toBe("stopped");
    await sandbox.start();
    expect(sandbox.state).toBe("started");
    expect((await sandbox.fs.downloadFile("/tmp/kept.txt")).toString()).toBe("kept");
  });
});

describe("Daytona code interpreter (a code-interpreter sandbox)", () => {
  let sandbox: Sandbox;

  beforeAll(async () => {
    sandbox = await newSandbox({ snapshot: "code-interpreter" });
  });

  it("keeps variables between cells and streams what a cell prints", async () => {
    await sandbox.codeInterpreter.runCode("x = 41");
    const chunks: string[] = [];
    const r = await sandbox.codeInterpreter.runCode("import sys\nprint(x + 1)\nsys.stderr.write('warn')", {
      onStdout: (m) => {
        chunks.push(m.output);
      },
    });
    expect(r.stdout).toBe("42\n");
    expect(chunks.join("")).toBe("42\n");
    expect(r.stderr).toBe("warn");
    expect(r.error).toBeUndefined();
  });

  it("reports an exception as the cell's error with its traceback", async () => {
    const r = await sandbox.codeInterpreter.runCode("1 / 0");
    expect(r.error?.name).toBe("ZeroDivisionError");
    expect(r.error?.traceback).toContain("ZeroDivisionError");
  });

  it("runs a cell in its own context, with the context's cwd and the cell's env", async () => {
    const context = await sandbox.codeInterpreter.createContext("/tmp");
    expect(context).toMatchObject({ language: "python", cwd: "/tmp", active: true });
    expect((await sandbox.codeInterpreter.listContexts()).map((c) => c.id)).toEqual([context.id]);
    const r = await sandbox.codeInterpreter.runCode(
      "import os\nprint(os.getcwd(), os.environ['COLOR'], 'x' in globals())",
      { context, envs: { COLOR: "red" } },
    );
    expect(r.stdout).toBe("/tmp red False\n");
    await sandbox.codeInterpreter.deleteContext(context);
    expect(await sandbox.codeInterpreter.listContexts()).toEqual([]);
  });

  it("interrupts a cell past its timeout with DaytonaTimeoutError; the context keeps its state", async () => {
    const error = await sandbox.codeInterpreter
      .runCode("import time\ntime.sleep(30)", { timeout: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DaytonaTimeoutError);
    const r = await sandbox.codeInterpreter.runCode("print(x)");
    expect(r.stdout).toBe("41\n");
  });

  it("refuses another organisation's key and a wrong key before opening the cell's socket", async () => {
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "daytona-intruder" });
    const url = `${server.url.replace("http", "ws")}/daytona/toolbox/${sandbox.id}/process/interpreter/execute`;
    for (const [key, expected] of [
      [other.key, 404],
      ["sp_wrong", 401],
    ] as const) {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` } });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => {
          ws.close();
          resolve(101);
        });
        ws.on("error", () => undefined);
      });
      expect(status).toBe(expected);
    }
  });

  it("answers a base sandbox's python cell with why it cannot run there", async () => {
    const base = await newSandbox();
    const error = await base.codeInterpreter.runCode("print(1)").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DaytonaConnectionError);
    expect((error as Error).message).toMatch(
      /python contexts are not available in this sandbox: no Jupyter kernel.*\(close code 4409\)/,
    );
  });
});

describe("Daytona errors", () => {
  it("answers an unknown sandbox with Daytona's 404", async () => {
    const error = await daytona.get("sbx_aaaaaaaaaaaaaaaaaaaa").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DaytonaNotFoundError);
    expect((error as DaytonaNotFoundError).statusCode).toBe(404);
  });

  it("answers a bad create with a 400 naming the field", async () => {
    const error = await daytona.create({ image: "debian:12", resources: { cpu: 99 } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DaytonaValidationError);
    expect((error as Error).message).toMatch(/^Invalid request: cpu: /);
    const res = await fetch(`${server.url}/daytona/api/sandbox`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ memory: 1000 }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      statusCode: 400,
      error: "Bad Request",
      message: "Invalid request: memory: must be between 1 and 16 (GB)",
      source: "DAYTONA_API",
    });
  });

  it("refuses what Sandpit does not have in Daytona's shape, naming it", async () => {
    const error = await daytona.create({ image: "debian:12", resources: { gpu: 1 } }).catch((e: unknown) => e);
    expect((error as { statusCode: number }).statusCode).toBe(501);
    expect((error as Error).message).toBe("gpu: GPUs is not supported by Sandpit");
  });

  it("deletes a sandbox: it is then gone", async () => {
    const sandbox = await newSandbox();
    await daytona.delete(sandbox);
    await expect(daytona.get(sandbox.id).then((s) => s.state)).resolves.toBe("destroyed");
    await expect(sandbox.process.executeCommand("true")).rejects.toBeInstanceOf(DaytonaNotFoundError);
  });
});
