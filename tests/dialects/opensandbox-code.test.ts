// OpenSandbox execd's code contexts (`/code`, `/code/context`, `/code/contexts`) and bash sessions
// (`/session`) against a real code-interpreter sandbox, driven over HTTP as execd's OpenAPI document shows
// them: JSON for contexts and sessions, `text/event-stream` of `data: <json>` frames for runs.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { apiClient } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer((s, a) => {
  server = s;
  api = a;
});

/** The sandbox's execd endpoint and the headers the endpoints call hands out for it. */
let execd: { base: string; headers: Record<string, string> };
let sandboxId: string;

beforeAll(async () => {
  sandboxId = (await api.createSandbox({ template: "code-interpreter" })).id;
  const res = await fetch(`${server.url}/opensandbox/v1/sandboxes/${sandboxId}/endpoints/44772`, {
    headers: { "OPEN-SANDBOX-API-KEY": server.apiKey },
  });
  const endpoint = (await res.json()) as { endpoint: string; headers: Record<string, string> };
  execd = { base: `http://${endpoint.endpoint}`, headers: endpoint.headers };
});

afterAll(async () => {
  if (sandboxId) await api.del(`/v1/sandboxes/${sandboxId}`);
});

interface ExecdEvent {
  type: string;
  text?: string;
  results?: Record<string, unknown>;
  execution_count?: number;
  execution_time?: number;
  error?: { ename: string; evalue: string; traceback: string[] };
}

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${execd.base}${path}`, {
    method,
    headers: { ...execd.headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type") ?? "", text };
}

async function json<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await call(method, path, body);
  return { status: res.status, body: (res.text ? JSON.parse(res.text) : undefined) as T };
}

/** A run's SSE events (pings left out), after checking it is an event stream. */
async function stream(path: string, body: unknown): Promise<ExecdEvent[]> {
  const res = await call("POST", path, body);
  expect(res.status, res.text).toBe(200);
  expect(res.type).toContain("text/event-stream");
  return res.text
    .split("\n\n")
    .filter((frame) => frame.startsWith("data: "))
    .map((frame) => JSON.parse(frame.slice("data: ".length)) as ExecdEvent)
    .filter((e) => e.type !== "ping");
}

const stdoutOf = (events: ExecdEvent[]) =>
  events
    .filter((e) => e.type === "stdout")
    .map((e) => e.text)
    .join("");

describe("OpenSandbox execd code contexts", () => {
  let contextId: string;

  it("creates, gets and lists a python context, and runs cells in it that keep their variables", async () => {
    const created = await json<{ id: string; language: string }>("POST", "/code/context", { language: "python" });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ id: expect.any(String), language: "python" });
    contextId = created.body.id;

    expect((await json("GET", `/code/contexts/${contextId}`)).body).toEqual({ id: contextId, language: "python" });
    const listed = await json<{ id: string; language: string }[]>("GET", "/code/contexts?language=python");
    expect(listed.body).toContainEqual({ id: contextId, language: "python" });
    expect((await json<unknown[]>("GET", "/code/contexts?language=javascript")).body).toEqual([]);

    const first = await stream("/code", {
      context: { id: contextId, language: "python" },
      code: "x = 40\nprint('hello')\nx + 1",
    });
    expect(first[0]).toMatchObject({ type: "init", text: contextId });
    expect(stdoutOf(first)).toBe("hello\n");
    expect(first).toContainEqual(expect.objectContaining({ type: "result", results: { "text/plain": "41" } }));
    const count = first.find((e) => e.type === "execution_count")?.execution_count;
    expect(count).toEqual(expect.any(Number));
    expect(first.at(-1)).toMatchObject({ type: "execution_complete", execution_time: expect.any(Number) });

    const second = await stream("/code", { context: { id: contextId, language: "python" }, code: "x + 2" });
    expect(second).toContainEqual(expect.objectContaining({ type: "result", results: { "text/plain": "42" } }));
    expect(second.find((e) => e.type === "execution_count")?.execution_count).toBe(count! + 1);
  });

  it("returns a DataFrame as text/html and a matplotlib figure as a PNG", async () => {
    const frame = await stream("/code", {
      context: { id: contextId, language: "python" },
      code: "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
    });
    const table = frame.find((e) => e.type === "result")?.results;
    expect(table?.["text/html"]).toContain("<table");
    expect(table?.["text/plain"]).toContain("a  b");

    const plot = await stream("/code", {
      context: { id: contextId, language: "python" },
      code: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
    });
    const png = plot.find((e) => e.type === "result" && e.results?.["image/png"])?.results?.["image/png"];
    expect(Buffer.from(String(png), "base64").subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
  });

  it("reports an error with its name and traceback, and the next cell still runs", async () => {
    const failed = await stream("/code", {
      context: { id: contextId, language: "python" },
      code: "def f():\n    raise ValueError('bad value')\nf()",
    });
    const error = failed.find((e) => e.type === "error")?.error;
    expect(error?.ename).toBe("ValueError");
    expect(error?.evalue).toBe("bad value");
    expect(error?.traceback.join("\n")).toContain("bad value");
    expect(error?.traceback.length).toBeGreaterThan(1);

    const next = await stream("/code", { context: { id: contextId, language: "python" }, code: "x" });
    expect(next).toContainEqual(expect.objectContaining({ type: "result", results: { "text/plain": "40" } }));
  });

  it("runs in a language's default context without an id, and code without a language as a shell command", async () => {
    const js = await stream("/code", { context: { language: "javascript" }, code: "let y = 6; y * 7" });
    expect(js[0]).toMatchObject({ type: "init", text: expect.any(String) });
    expect(js).toContainEqual(expect.objectContaining({ type: "result", results: { "text/plain": "42" } }));

    const shell = await stream("/code", { code: "echo stateless $((6 * 7))" });
    expect(shell[0]).toMatchObject({ type: "init", text: expect.stringMatching(/^cmd_/) });
    expect(stdoutOf(shell)).toBe("stateless 42\n");
    expect(shell.at(-1)).toMatchObject({ type: "execution_complete" });
  });

  it("interrupts a running cell with DELETE /code?id= and keeps the context's variables", async () => {
    const running = stream("/code", {
      context: { id: contextId, language: "python" },
      code: "import time\nprint('started', flush=True)\nwhile True: time.sleep(0.05)",
    });
    // The interrupt is only meaningful once the cell runs: poll until it does (DELETE answers 200 either way).
    let events: ExecdEvent[] | undefined;
    const settled = running.then((e) => {
      events = e;
    });
    for (let i = 0; i < 200 && events === undefined; i++) {
      expect((await call("DELETE", `/code?id=${encodeURIComponent(contextId)}`)).status).toBe(200);
      await Promise.race([settled, new Promise((r) => setTimeout(r, 100))]);
    }
    expect(events).toBeDefined();
    expect(events!.find((e) => e.type === "error")?.error?.ename).toBe("KeyboardInterrupt");

    const after = await stream("/code", { context: { id: contextId, language: "python" }, code: "x" });
    expect(after).toContainEqual(expect.objectContaining({ type: "result", results: { "text/plain": "40" } }));
  });

  it("refuses languages Sandpit does not run, naming them, and unknown contexts, in execd's error shape", async () => {
    const java = await json<{ code: string; message: string }>("POST", "/code/context", { language: "java" });
    expect(java.status).toBe(409);
    expect(java.body).toEqual({ code: "NOT_SUPPORTED", message: expect.stringContaining('"java"') });

    const go = await json<{ code: string; message: string }>("POST", "/code", {
      context: { language: "go" },
      code: "fmt.Println(1)",
    });
    expect(go.status).toBe(409);
    expect(go.body.message).toContain('"go"');

    const cobol = await json<{ code: string; message: string }>("POST", "/code/context", { language: "cobol" });
    expect(cobol.status).toBe(400);
    expect(cobol.body).toEqual({ code: "INVALID_REQUEST_BODY", message: expect.stringContaining("language") });

    const missing = await json<{ code: string }>("GET", "/code/contexts/nosuchcontext");
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe("CONTEXT_NOT_FOUND");
    const run = await json<{ code: string }>("POST", "/code", { context: { id: "nosuchcontext" }, code: "1" });
    expect(run.status).toBe(404);
    expect(run.body.code).toBe("CONTEXT_NOT_FOUND");
  });

  it("deletes a context by id, and all contexts of a language", async () => {
    expect((await call("DELETE", `/code/contexts/${contextId}`)).status).toBe(200);
    expect((await json("GET", `/code/contexts/${contextId}`)).status).toBe(404);
    expect((await call("DELETE", `/code/contexts/${contextId}`)).status).toBe(404);

    await json("POST", "/code/context", { language: "javascript" });
    expect((await json<unknown[]>("GET", "/code/contexts?language=javascript")).body.length).toBeGreaterThan(0);
    expect((await call("DELETE", "/code/contexts?language=javascript")).status).toBe(200);
    expect((await json<unknown[]>("GET", "/code/contexts?language=javascript")).body).toEqual([]);
  });
});

describe("OpenSandbox execd bash sessions", () => {
  it("creates a session, runs commands in it that keep cwd and variables, and deletes it", async () => {
    const created = await json<{ session_id: string }>("POST", "/session", { cwd: "/tmp" });
    expect(created.status).toBe(200);
    const id = created.body.session_id;
    expect(id).toEqual(expect.any(String));

    const first = await stream(`/session/${id}/run`, { command: "pwd; mkdir -p work && cd work; export GREETING=hi" });
    expect(first[0]).toMatchObject({ type: "init", text: id });
    expect(stdoutOf(first)).toBe("/tmp\n");
    expect(first.at(-1)).toMatchObject({ type: "execution_complete" });

    const second = await stream(`/session/${id}/run`, { command: "pwd; echo $GREETING" });
    expect(stdoutOf(second)).toBe("/tmp/work\nhi\n");

    // A cwd for one run is changed to first; the failing command's exit status is execd's error value.
    const third = await stream(`/session/${id}/run`, { command: "pwd; false", cwd: "/" });
    expect(stdoutOf(third)).toBe("/\n");
    expect(third.at(-1)).toMatchObject({ type: "error", error: { ename: "CommandExecError", evalue: "1" } });

    expect((await call("DELETE", `/session/${id}`)).status).toBe(200);
    const gone = await json<{ code: string }>("POST", `/session/${id}/run`, { command: "true" });
    expect(gone.status).toBe(404);
    expect(gone.body.code).toBe("CONTEXT_NOT_FOUND");
    expect((await call("DELETE", `/session/${id}`)).status).toBe(404);
  });

  it("creates a session with an empty body, and refuses a run without a command", async () => {
    const res = await fetch(`${execd.base}/session`, { method: "POST", headers: execd.headers });
    expect(res.status).toBe(200);
    const { session_id } = (await res.json()) as { session_id: string };
    const bad = await json<{ code: string; message: string }>("POST", `/session/${session_id}/run`, { command: " " });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ code: "INVALID_REQUEST_BODY", message: expect.stringContaining("command") });
    expect((await call("DELETE", `/session/${session_id}`)).status).toBe(200);
  });
});
