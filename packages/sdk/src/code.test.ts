import type { CodeContext } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { ApiClient } from "./api-client.js";
import { Code, type CodeResult } from "./code.js";
import { type FetchFunction, resolveConfig } from "./config.js";
import { NetworkError, NotFoundError, SandpitError } from "./errors.js";

/** A fetch that answers every call with `reply()` and records what it was asked. */
function recordingFetch(reply: () => Response) {
  const calls: { url: string; method: string; headers: Record<string, string>; body: unknown }[] = [];
  const fetch: FetchFunction = async (input, init) => {
    calls.push({
      url: String(input),
      method: init?.method ?? "GET",
      headers: (init?.headers ?? {}) as Record<string, string>,
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    });
    return reply();
  };
  return { fetch, calls };
}

function code(fetch: FetchFunction): Code {
  return new Code("sbx_1", new ApiClient(resolveConfig({ apiUrl: "http://sandpit.test", fetch, maxRetries: 0 }, {})));
}

function ndjson(lines: unknown[], headers: Record<string, string> = {}): Response {
  const text = lines.map((line) => `${JSON.stringify(line)}\n`).join("");
  return new Response(text, { headers: { "content-type": "application/x-ndjson", ...headers } });
}

const png = { "image/png": "iVBORw0KGgo=", "text/plain": "<Figure>" };
const cellEvents = [
  { type: "stdout", text: "hello\n" },
  { type: "result", isMainResult: false, data: png },
  { type: "stderr", text: "careful\n" },
  { type: "result", isMainResult: true, data: { "text/plain": "42" } },
  { type: "end", status: "ok", executionCount: 3, durationMs: 12 },
];

const context: CodeContext = {
  id: "ctx_7",
  language: "python",
  cwd: "/home/user",
  isDefault: false,
  createdAt: "2025-01-01T00:00:00.000Z",
};

describe("sandbox.code.run", () => {
  it("streams the cell, feeds the callbacks in order and gathers the execution", async () => {
    const { fetch, calls } = recordingFetch(() => ndjson(cellEvents, { "x-code-context-id": "default-python" }));
    const seen: string[] = [];
    const execution = await code(fetch).run("print('hello'); 42", {
      onStdout: (text) => seen.push(`out:${text}`),
      onStderr: (text) => seen.push(`err:${text}`),
      onResult: (result: CodeResult) => seen.push(`result:${result.isMainResult}`),
      onError: () => seen.push("error"),
    });
    expect(seen).toEqual(["out:hello\n", "result:false", "err:careful\n", "result:true"]);
    expect(execution).toEqual({
      contextId: "default-python",
      stdout: ["hello\n"],
      stderr: ["careful\n"],
      results: [
        { isMainResult: false, data: png },
        { isMainResult: true, data: { "text/plain": "42" } },
      ],
      error: null,
      status: "ok",
      executionCount: 3,
      durationMs: 12,
    });
    expect(calls[0]).toMatchObject({
      url: "http://sandpit.test/v1/sandboxes/sbx_1/code/run",
      method: "POST",
      headers: { accept: "application/x-ndjson" },
      body: { code: "print('hello'); 42" },
    });
  });

  it("sends the context's id, the env and the timeout; a context object works like its id", async () => {
    const { fetch, calls } = recordingFetch(() => ndjson(cellEvents.slice(-1)));
    const execution = await code(fetch).run("x", { context, env: { A: "1" }, timeoutMs: 5000 });
    expect(calls[0]?.body).toEqual({ code: "x", contextId: "ctx_7", env: { A: "1" }, timeoutMs: 5000 });
    expect(execution.contextId).toBe("ctx_7");
    await code(fetch).run("x", { language: "javascript" });
    expect(calls[1]?.body).toEqual({ code: "x", language: "javascript" });
  });

  it("resolves a cell that raised with its error, after calling onError", async () => {
    const error = { name: "ValueError", value: "bad", traceback: "Traceback ...\nValueError: bad" };
    const { fetch } = recordingFetch(() =>
      ndjson([
        { type: "error", ...error },
        { type: "end", status: "error", executionCount: 4, durationMs: 1 },
      ]),
    );
    const errors: unknown[] = [];
    const execution = await code(fetch).run("raise ValueError('bad')", { onError: (e) => errors.push(e) });
    expect(errors).toEqual([error]);
    expect(execution).toMatchObject({ status: "error", error });
  });

  it("rejects with the API's error when the stream fails after it started", async () => {
    const { fetch } = recordingFetch(() =>
      ndjson([
        { type: "stdout", text: "partial\n" },
        { type: "error", code: "sandbox_failed", message: "the sandbox's code server went away during the cell" },
      ]),
    );
    const failure = await code(fetch)
      .run("x")
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(SandpitError);
    expect(failure).toMatchObject({ code: "sandbox_failed", message: /went away/ });
  });

  it("rejects with a NetworkError when the stream ends before the cell's end", async () => {
    const { fetch } = recordingFetch(() => ndjson([{ type: "stdout", text: "partial\n" }]));
    await expect(code(fetch).run("x")).rejects.toBeInstanceOf(NetworkError);
  });

  it("rejects up-front API errors with their typed error", async () => {
    const { fetch } = recordingFetch(
      () =>
        new Response(JSON.stringify({ error: { code: "code_context_not_found", message: "no context ctx_9" } }), {
          status: 404,
          headers: { "content-type": "application/json" },
        }),
    );
    const failure = await code(fetch)
      .run("x", { context: "ctx_9" })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(NotFoundError);
    expect(failure).toMatchObject({ code: "code_context_not_found" });
  });
});

describe("sandbox.code contexts", () => {
  it("creates, lists, restarts and removes contexts at the native routes", async () => {
    const { fetch, calls } = recordingFetch(() => {
      const call = calls.at(-1)!;
      if (call.method === "DELETE") return new Response(null, { status: 204 });
      const body = call.method === "GET" ? { contexts: [context] } : context;
      return new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json" } });
    });
    const api = code(fetch);
    expect(await api.createContext({ language: "python", cwd: "/tmp", env: { A: "1" } })).toEqual(context);
    expect(await api.listContexts()).toEqual([context]);
    expect(await api.restartContext(context)).toEqual(context);
    await api.removeContext("ctx/7");
    expect(calls.map((c) => `${c.method} ${c.url.replace("http://sandpit.test/v1/sandboxes/sbx_1/code", "")}`)).toEqual(
      ["POST /contexts", "GET /contexts", "POST /contexts/ctx_7/restart", "DELETE /contexts/ctx%2F7"],
    );
    expect(calls[0]?.body).toEqual({ language: "python", cwd: "/tmp", env: { A: "1" } });
  });
});
