// sandbox.code of the SDK against a real server and one code-interpreter sandbox.
import { type CodeResult, type ConnectionOptions, NotFoundError, Sandbox } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let connection: ConnectionOptions;
let sandbox: Sandbox;

beforeAll(async () => {
  server = await startTestServer();
  connection = { apiUrl: server.url, apiKey: server.apiKey };
  sandbox = await Sandbox.create({ template: "code-interpreter", timeoutMs: 600_000 }, connection);
});

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
  await server?.close();
});

describe("sandbox.code.run", () => {
  it("feeds onStdout while the cell still runs", async () => {
    // The cell waits for a file that the test writes only once onStdout saw the first line: without live
    // callbacks the cell would never get past its wait.
    const gate = "/tmp/sdk-code-gate";
    const seen: string[] = [];
    let released: Promise<unknown> | undefined;
    const execution = await sandbox.code.run(
      `import os, time\nprint("waiting", flush=True)\nwhile not os.path.exists(${JSON.stringify(gate)}):\n    time.sleep(0.05)\nprint("released")`,
      {
        timeoutMs: 60_000,
        onStdout: (text) => {
          seen.push(text);
          if (text.includes("waiting")) released ??= sandbox.files.write(gate, "go");
        },
      },
    );
    await released;
    expect(execution.status).toBe("ok");
    expect(seen.join("")).toBe("waiting\nreleased\n");
  });

  it("keeps variables between cells and returns the value as the main result", async () => {
    const first = await sandbox.code.run("counter = 41");
    expect(first.contextId).toMatch(/\S/);
    expect(first.contextId).toBe((await sandbox.code.run("0")).contextId);
    const results: CodeResult[] = [];
    const execution = await sandbox.code.run("counter + 1", { onResult: (r) => results.push(r) });
    expect(execution).toMatchObject({ status: "ok", error: null, stdout: [], stderr: [] });
    expect(execution.results).toEqual([{ isMainResult: true, data: expect.objectContaining({ "text/plain": "42" }) }]);
    expect(results).toEqual(execution.results);
    expect(execution.executionCount).toBeGreaterThan(first.executionCount ?? 0);
    const contexts = await sandbox.code.listContexts();
    expect(contexts).toContainEqual(expect.objectContaining({ id: execution.contextId, isDefault: true }));
  });

  it("returns a matplotlib figure as a PNG and a DataFrame as HTML", async () => {
    const results: CodeResult[] = [];
    const execution = await sandbox.code.run(
      "import matplotlib.pyplot as plt, pandas as pd\nplt.plot([1, 2, 3])\nplt.show()\npd.DataFrame({'a': [1, 2]})",
      { onResult: (r) => results.push(r) },
    );
    expect(execution.status).toBe("ok");
    const figure = results.find((r) => typeof r.data["image/png"] === "string");
    expect(figure?.isMainResult).toBe(false);
    const png = Buffer.from(figure!.data["image/png"] as string, "base64");
    expect(png.subarray(0, 4)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    const table = results.find((r) => r.isMainResult);
    expect(table?.data["text/html"]).toMatch(/<table/);
  });

  it("reports an error with its traceback through onError, and the next cell still runs", async () => {
    const errors: unknown[] = [];
    const execution = await sandbox.code.run("raise ValueError('nope')", { onError: (e) => errors.push(e) });
    expect(execution.status).toBe("error");
    expect(execution.error).toMatchObject({ name: "ValueError", value: "nope" });
    expect(execution.error?.traceback).toMatch(/ValueError: nope/);
    expect(errors).toEqual([execution.error]);
    expect((await sandbox.code.run("counter")).results[0]?.data["text/plain"]).toBe("41");
  });

  it("interrupts a cell past timeoutMs and the context keeps its variables", async () => {
    await sandbox.code.run("kept = 'still here'");
    const execution = await sandbox.code.run("while True: pass", { timeoutMs: 1500 });
    expect(execution.status).toBe("timeout");
    expect(execution.error?.name).toBe("TimeoutError");
    expect((await sandbox.code.run("kept")).results[0]?.data["text/plain"]).toBe("'still here'");
  });

  it("a quiet cell that runs longer than the client's request timeout still completes", async () => {
    // The request timeout covers the wait for the response to start: a cell's response starts when the cell
    // does, not with its first output.
    const impatient = await Sandbox.get(sandbox.id, { ...connection, timeoutMs: 4000 });
    const execution = await impatient.code.run("import time\ntime.sleep(8)\n'slept'");
    expect(execution.results[0]?.data["text/plain"]).toBe("'slept'");
  });

  it("aborting the signal interrupts the cell and rejects; the context keeps its state", async () => {
    const abort = new AbortController();
    const running = sandbox.code.run("import time\nprint('started', flush=True)\nwhile True: time.sleep(0.05)", {
      signal: abort.signal,
      onStdout: () => abort.abort(new Error("stopped by the test")),
    });
    await expect(running).rejects.toThrow("stopped by the test");
    // The default context serves the next cell, so the endless one was interrupted.
    expect((await sandbox.code.run("kept")).status).toBe("ok");
  });
});

describe("sandbox.code contexts", () => {
  it("creates separate contexts, runs JavaScript, restarts and removes them", async () => {
    const py = await sandbox.code.createContext({ language: "python", cwd: "/tmp", env: { FROM_CONTEXT: "yes" } });
    expect(py).toMatchObject({ language: "python", cwd: "/tmp", isDefault: false });
    const inContext = await sandbox.code.run("import os\nprint(os.getcwd(), os.environ['FROM_CONTEXT'])\nmine = 1", {
      context: py,
    });
    expect(inContext.contextId).toBe(py.id);
    expect(inContext.stdout.join("")).toBe("/tmp yes\n");
    const isolated = await sandbox.code.run("counter", { context: py.id });
    expect(isolated.error?.name).toBe("NameError");

    const js = await sandbox.code.createContext({ language: "javascript" });
    await sandbox.code.run("let total = 40", { context: js });
    const jsValue = await sandbox.code.run("total + 2", { context: js });
    expect(jsValue.results.find((r) => r.isMainResult)?.data["text/plain"]).toBe("42");

    expect((await sandbox.code.listContexts()).map((c) => c.id)).toEqual(expect.arrayContaining([py.id, js.id]));

    expect(await sandbox.code.restartContext(py)).toMatchObject({ id: py.id, cwd: "/tmp" });
    expect((await sandbox.code.run("mine", { context: py })).error?.name).toBe("NameError");

    await sandbox.code.removeContext(py);
    await sandbox.code.removeContext(js.id);
    const ids = (await sandbox.code.listContexts()).map((c) => c.id);
    expect(ids).not.toContain(py.id);
    expect(ids).not.toContain(js.id);
    const gone = await sandbox.code.run("1", { context: py }).catch((err: unknown) => err);
    expect(gone).toBeInstanceOf(NotFoundError);
    expect(gone).toMatchObject({ code: "code_context_not_found" });
  });
});
