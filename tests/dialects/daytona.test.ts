// The official `@daytonaio/sdk`, configured only by DAYTONA_API_URL and DAYTONA_API_KEY, against Sandpit's
// Daytona dialect; plus raw HTTP checks of the error shape.

import {
  type CreateSandboxFromSnapshotParams,
  Daytona,
  DaytonaFileNotFoundError,
  DaytonaNotFoundError,
  DaytonaValidationError,
  type Sandbox,
} from "@daytonaio/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
