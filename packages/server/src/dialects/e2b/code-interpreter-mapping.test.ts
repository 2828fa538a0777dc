import type { CodeEvent } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.js";
import {
  e2bLines,
  executeRequestSchema,
  languageFrom,
  linesOf,
  resultLineOf,
  routeOf,
} from "./code-interpreter-mapping.js";
import { createRequestFrom } from "./mapping.js";

const AT = new Date("2025-01-02T03:04:05.000Z");

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe("E2B code interpreter mapping", () => {
  it("reads E2B's language names as Sandpit's and refuses the others with a 400 naming them", () => {
    expect(languageFrom(undefined)).toBeUndefined();
    expect(languageFrom(null)).toBeUndefined();
    expect(languageFrom(" ")).toBeUndefined();
    expect(languageFrom("Python")).toBe("python");
    expect(languageFrom("js")).toBe("javascript");
    expect(languageFrom(" JavaScript ")).toBe("javascript");
    expect(languageFrom("bash")).toBe("bash");
    let refused: unknown;
    try {
      languageFrom("r");
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(ApiError);
    expect((refused as ApiError).status).toBe(400);
    expect((refused as ApiError).message).toContain('"r"');
  });

  it("puts each MIME type of a result in E2B's field, the rest in extra, and unquotes plain text", () => {
    const line = resultLineOf({
      type: "result",
      isMainResult: true,
      data: {
        "text/plain": "'hello'",
        "text/html": "<b>hi</b>",
        "image/png": "iVBORw0KGgo=",
        "application/json": { a: 1 },
        "application/vnd.custom+json": { b: 2 },
      },
    });
    expect(line).toEqual({
      type: "result",
      text: "hello",
      html: "<b>hi</b>",
      png: "iVBORw0KGgo=",
      json: { a: 1 },
      extra: { "application/vnd.custom+json": { b: 2 } },
      is_main_result: true,
    });
    const figure = resultLineOf({
      type: "result",
      isMainResult: false,
      data: { "text/plain": "<Figure size 640x480 with 1 Axes>", "image/svg+xml": "<svg/>", "text/latex": "$x$" },
    });
    expect(figure).toEqual({
      type: "result",
      text: "<Figure size 640x480 with 1 Axes>",
      svg: "<svg/>",
      latex: "$x$",
      is_main_result: false,
    });
    // A one-character value is not a quoted string.
    expect(resultLineOf({ type: "result", isMainResult: true, data: { "text/plain": "'" } }).text).toBe("'");
  });

  it("streams a cell as E2B's NDJSON lines", async () => {
    const events: CodeEvent[] = [
      { type: "stdout", text: "out\n" },
      { type: "stderr", text: "err\n" },
      { type: "error", name: "ValueError", value: "bad", traceback: "Traceback…\nValueError: bad" },
      { type: "end", status: "error", executionCount: 3, durationMs: 12 },
    ];
    expect(linesOf(events[0]!, AT)).toEqual([{ type: "stdout", text: "out\n", timestamp: AT.toISOString() }]);
    expect(linesOf(events[1]!, AT)).toEqual([{ type: "stderr", text: "err\n", timestamp: AT.toISOString() }]);
    expect(linesOf(events[2]!, AT)).toEqual([
      { type: "error", name: "ValueError", value: "bad", traceback: "Traceback…\nValueError: bad" },
    ]);
    expect(linesOf(events[3]!, AT)).toEqual([{ type: "number_of_executions", execution_count: 3 }]);
    expect(linesOf({ type: "end", status: "interrupted", executionCount: null, durationMs: 1 }, AT)).toEqual([]);
    async function* source() {
      yield* events;
    }
    expect((await collect(e2bLines(source()))).map((l) => l.type)).toEqual([
      "stdout",
      "stderr",
      "error",
      "number_of_executions",
    ]);
  });

  it("reads the SDK's cell request, with nulls as the Python SDK sends them", () => {
    expect(executeRequestSchema.parse({ code: "1", context_id: null, language: null, env_vars: null })).toEqual({
      code: "1",
      context_id: null,
      language: null,
      env_vars: null,
    });
    expect(executeRequestSchema.safeParse({ language: "python" }).success).toBe(false);
    expect(executeRequestSchema.safeParse({ code: "1", env_vars: { A: 1 } }).success).toBe(false);
  });

  it("routes the code interpreter's paths, with 405 for another method and 404 for another path", () => {
    expect(routeOf("GET", "/health")).toEqual({ kind: "health" });
    expect(routeOf("POST", "/execute")).toEqual({ kind: "execute" });
    expect(routeOf("POST", "/contexts")).toEqual({ kind: "create-context" });
    expect(routeOf("GET", "/contexts/")).toEqual({ kind: "list-contexts" });
    expect(routeOf("POST", "/contexts/ctx_1/restart")).toEqual({ kind: "restart-context", contextId: "ctx_1" });
    expect(routeOf("DELETE", "/contexts/ctx%5F1")).toEqual({ kind: "delete-context", contextId: "ctx_1" });
    const statusOf = (method: string, path: string) => {
      try {
        routeOf(method, path);
      } catch (e) {
        return (e as ApiError).status;
      }
      return 200;
    };
    expect(statusOf("GET", "/execute")).toBe(405);
    expect(statusOf("DELETE", "/contexts")).toBe(405);
    expect(statusOf("GET", "/nothing")).toBe(404);
    expect(statusOf("DELETE", "/contexts/%E0%A4%A")).toBe(400);
  });

  it("resolves code-interpreter-v1, the SDK's default template, to the built-in code-interpreter", () => {
    expect(createRequestFrom({ templateID: "code-interpreter-v1" }).template).toBe("code-interpreter");
    expect(createRequestFrom({ templateID: "base" }).template).toBe("base");
  });
});
