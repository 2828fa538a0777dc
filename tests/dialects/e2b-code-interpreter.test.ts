// The official `@e2b/code-interpreter` SDK, configured as the README configures `e2b` (E2B_API_KEY,
// E2B_API_URL, E2B_SANDBOX_URL), against Sandpit: one sandbox of the SDK's default template.
import { type ExecutionError, type Logs, type OutputMessage, type Result, Sandbox } from "@e2b/code-interpreter";
import { NotFoundError, TimeoutError } from "e2b";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

const saved = { ...process.env };
let sandbox: Sandbox;

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "e2b-ci-users", format: "e2b" });
  process.env.E2B_API_KEY = key;
  process.env.E2B_API_URL = `${server.url}/e2b`;
  process.env.E2B_SANDBOX_URL = `${server.url}/e2b/envd`;
  sandbox = await Sandbox.create({ timeoutMs: 300_000 });
});

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
  process.env = saved;
});

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The sandbox's envd access token, from E2B's REST API (the SDK keeps its copy protected). */
async function envdAccessToken(): Promise<string> {
  const res = await fetch(`${server.url}/e2b/sandboxes/${sandbox.sandboxId}`, {
    headers: { "X-API-KEY": String(process.env.E2B_API_KEY) },
  });
  const body = (await res.json()) as { envdAccessToken: string };
  return body.envdAccessToken;
}

/** A raw request to the sandbox URL, as the SDK sends its code interpreter calls. */
function sandboxUrlRequest(path: string, init: { method?: string; headers?: Record<string, string>; body?: string }) {
  return fetch(`${server.url}/e2b/envd${path}`, {
    method: init.method ?? "GET",
    headers: { "E2b-Sandbox-Id": sandbox.sandboxId, ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
}

describe("@e2b/code-interpreter SDK", () => {
  it("creates its default template (code-interpreter-v1 is the built-in code-interpreter)", async () => {
    const info = await sandbox.getInfo();
    expect(info.templateId).toBe("code-interpreter");
  });

  it("keeps state across runCode calls and gives the cell's value as text", async () => {
    await sandbox.runCode("x = 41");
    const execution = await sandbox.runCode("x + 1");
    expect(execution.text).toBe("42");
    expect(execution.error).toBeUndefined();
    expect(execution.executionCount).toBeGreaterThanOrEqual(2);
    // A string's value comes without its quotes, as E2B gives it.
    expect((await sandbox.runCode("'hello'")).text).toBe("hello");
  });

  it("returns a matplotlib plot as a valid PNG", async () => {
    const execution = await sandbox.runCode(
      "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('chart')\nplt.show()",
    );
    expect(execution.error).toBeUndefined();
    const figure = execution.results.find((r) => r.png);
    expect(figure).toBeDefined();
    const png = Buffer.from(figure!.png!, "base64");
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    // IHDR: a real image with a width and a height.
    expect(png.readUInt32BE(16)).toBeGreaterThan(0);
    expect(png.readUInt32BE(20)).toBeGreaterThan(0);
  });

  it("returns a pandas DataFrame as HTML", async () => {
    const execution = await sandbox.runCode("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})");
    const main = execution.results.find((r) => r.isMainResult);
    expect(main?.html).toContain("<table");
    expect(main?.html).toContain("<th>a</th>");
    expect(main?.text).toContain("a  b");
  });

  it("reports raise ValueError as an error with its traceback, and the next cell runs", async () => {
    const failed = await sandbox.runCode("raise ValueError('bad value')");
    expect(failed.error?.name).toBe("ValueError");
    expect(failed.error?.value).toBe("bad value");
    expect(failed.error?.traceback).toContain("ValueError");
    const next = await sandbox.runCode("x * 2");
    expect(next.error).toBeUndefined();
    expect(next.text).toBe("82");
  });

  it("times out an endless loop (timeoutMs aborts the request) and the context keeps its variables", async () => {
    const failure = await sandbox.runCode("while True:\n    pass", { timeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TimeoutError);
    // The loop was interrupted: the context answers the next cell, with its state.
    const after = await sandbox.runCode("x");
    expect(after.text).toBe("41");
  });

  it("keeps state in JavaScript (language js)", async () => {
    await sandbox.runCode("let counter = 5", { language: "js" });
    const execution = await sandbox.runCode("counter * 2", { language: "js" });
    expect(execution.error).toBeUndefined();
    expect(execution.text).toBe("10");
  });

  it("keeps two contexts apart and lists, restarts and removes them", async () => {
    const first = await sandbox.createCodeContext({ language: "python", cwd: "/tmp" });
    const second = await sandbox.createCodeContext();
    expect(first).toEqual({ id: expect.any(String), language: "python", cwd: "/tmp" });
    expect(second.id).not.toBe(first.id);
    await sandbox.runCode("secret = 'first only'", { context: first });
    expect((await sandbox.runCode("secret", { context: first })).text).toBe("first only");
    const other = await sandbox.runCode("secret", { context: second });
    expect(other.error?.name).toBe("NameError");
    expect((await sandbox.runCode("import os; os.getcwd()", { context: first })).text).toBe("/tmp");

    const listed = await sandbox.listCodeContexts();
    expect(listed.map((c) => c.id)).toEqual(expect.arrayContaining([first.id, second.id]));
    expect(listed.find((c) => c.id === first.id)).toEqual(first);

    await sandbox.restartCodeContext(first);
    const restarted = await sandbox.runCode("secret", { context: first });
    expect(restarted.error?.name).toBe("NameError");

    await sandbox.removeCodeContext(second.id);
    expect((await sandbox.listCodeContexts()).map((c) => c.id)).not.toContain(second.id);
    const gone = await sandbox.runCode("1", { context: second }).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(NotFoundError);
    expect(String(gone)).toContain(`no code context ${second.id}`);
  });

  it("calls onStdout, onStderr, onResult and onError as the cell runs, with envs for the cell", async () => {
    const stdout: OutputMessage[] = [];
    const stderr: OutputMessage[] = [];
    const results: Result[] = [];
    const errors: ExecutionError[] = [];
    const execution = await sandbox.runCode(
      "import os, sys\nprint('out', os.environ['GREETING'])\nprint('err', file=sys.stderr)\nfrom IPython.display import display, HTML\ndisplay(HTML('<i>shown</i>'))\nraise KeyError('k')",
      {
        envs: { GREETING: "hi" },
        onStdout: (m) => void stdout.push(m),
        onStderr: (m) => void stderr.push(m),
        onResult: (r) => void results.push(r),
        onError: (e) => void errors.push(e),
      },
    );
    expect(stdout.map((m) => m.line).join("")).toBe("out hi\n");
    expect(stdout[0]?.error).toBe(false);
    expect(stderr.map((m) => m.line).join("")).toBe("err\n");
    expect(stderr[0]?.error).toBe(true);
    expect(results.map((r) => r.html)).toEqual(["<i>shown</i>"]);
    expect(results[0]?.isMainResult).toBe(false);
    expect(errors.map((e) => e.name)).toEqual(["KeyError"]);
    const logs: Logs = execution.logs;
    expect(logs.stdout.join("")).toBe("out hi\n");
    // The variable was the cell's only.
    const later = await sandbox.runCode("import os; os.environ.get('GREETING', 'unset')");
    expect(later.text).toBe("unset");
  });

  it("keeps a context's variables across pause and resume, and in a fork child", async () => {
    expect(await sandbox.betaPause()).toBe(true);
    sandbox = await Sandbox.connect(sandbox.sandboxId);
    // The error and stderr show in a failure: an interpreter that had exited is reported on stderr.
    const resumed = await sandbox.runCode("x");
    expect({ text: resumed.text, error: resumed.error?.value, stderr: resumed.logs.stderr.join("") }).toEqual({
      text: "41",
      error: undefined,
      stderr: "",
    });
    const [child] = await sandbox.fork();
    if (child instanceof Error) throw child;
    try {
      expect(child!.sandboxId).not.toBe(sandbox.sandboxId);
      expect((await child!.runCode("x")).text).toBe("41");
      await child!.runCode("x = 'child'");
      expect((await sandbox.runCode("x")).text).toBe("41");
    } finally {
      await child!.kill();
    }
  });

  it("refuses a language it does not have with a 400 in E2B's shape", async () => {
    const res = await sandboxUrlRequest("/execute", {
      method: "POST",
      headers: {
        "E2b-Sandbox-Port": "49999",
        "X-Access-Token": await envdAccessToken(),
        "content-type": "application/json",
      },
      body: JSON.stringify({ code: "1", language: "cobol" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ code: 400, message: expect.stringContaining('"cobol"') });
    expect(res.headers.get("x-request-id")).toMatch(/\S/);
  });

  it("answers an unknown envd path with an error body and X-Request-ID", async () => {
    const res = await sandboxUrlRequest("/no/such/path", {
      method: "POST",
      headers: { "E2b-Sandbox-Port": "49983", "X-Access-Token": await envdAccessToken() },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ code: 404, message: expect.stringContaining("/no/such/path") });
    expect(res.headers.get("x-request-id")).toMatch(/\S/);
  });
});
