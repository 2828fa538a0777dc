import type { CodeEvent } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.js";
import { execdErrorReply } from "./errors.js";
import { type CellKind, codeLanguageOf, execdCodeEventsOf, exitCodeOf, shellQuote } from "./execd-code.js";

async function mapped(events: CodeEvent[], kind: CellKind, interrupted = false) {
  async function* source() {
    yield* events;
    if (interrupted) throw new Error("aborted");
  }
  const out: Record<string, unknown>[] = [];
  for await (const e of execdCodeEventsOf("ctx1", source(), kind, () => interrupted)) {
    const { timestamp, ...rest } = e;
    expect(timestamp).toEqual(expect.any(Number));
    out.push(rest);
  }
  return out;
}

describe("execd code events", () => {
  it("maps a cell: init with the context, output, rich results, then the count and completion", async () => {
    const events = await mapped(
      [
        { type: "stdout", text: "hi\n" },
        { type: "stderr", text: "" },
        { type: "result", isMainResult: false, data: { "image/png": "iVBOR", "text/plain": "<Figure>" } },
        { type: "result", isMainResult: true, data: { "text/plain": "4", "text/html": "<b>4</b>" } },
        { type: "end", status: "ok", executionCount: 3, durationMs: 12.6 },
      ],
      "code",
    );
    expect(events).toEqual([
      { type: "init", text: "ctx1" },
      { type: "stdout", text: "hi\n" },
      { type: "result", results: { "image/png": "iVBOR", "text/plain": "<Figure>" } },
      { type: "result", results: { "text/plain": "4", "text/html": "<b>4</b>" } },
      { type: "execution_count", execution_count: 3 },
      { type: "execution_complete", execution_time: 13 },
    ]);
  });

  it("maps a cell's error with its traceback as lines, and still completes", async () => {
    const events = await mapped(
      [
        { type: "error", name: "ValueError", value: "bad", traceback: "Traceback…\n  line 1\nValueError: bad" },
        { type: "end", status: "error", executionCount: 4, durationMs: 5 },
      ],
      "code",
    );
    expect(events).toEqual([
      { type: "init", text: "ctx1" },
      {
        type: "error",
        error: { ename: "ValueError", evalue: "bad", traceback: ["Traceback…", "  line 1", "ValueError: bad"] },
      },
      { type: "execution_count", execution_count: 4 },
      { type: "execution_complete", execution_time: 5 },
    ]);
  });

  it("maps a session command's failure to CommandExecError with the exit status and no completion", async () => {
    const events = await mapped(
      [
        { type: "stdout", text: "x\n" },
        { type: "error", name: "ExitCode", value: "exit status 3", traceback: "" },
        { type: "end", status: "error", executionCount: 2, durationMs: 5 },
      ],
      "session",
    );
    expect(events).toEqual([
      { type: "init", text: "ctx1" },
      { type: "stdout", text: "x\n" },
      { type: "error", error: { ename: "CommandExecError", evalue: "3", traceback: ["command exited with code 3"] } },
    ]);
    const ok = await mapped([{ type: "end", status: "ok", executionCount: 3, durationMs: 1 }], "session");
    expect(ok).toEqual([
      { type: "init", text: "ctx1" },
      { type: "execution_complete", execution_time: 1 },
    ]);
  });

  it("ends an interrupted cell with a KeyboardInterrupt error, and passes other failures on", async () => {
    const events = await mapped([{ type: "stdout", text: "working\n" }], "code", true);
    expect(events.at(-1)).toEqual({
      type: "error",
      error: { ename: "KeyboardInterrupt", evalue: "interrupted", traceback: ["KeyboardInterrupt: interrupted"] },
    });
    async function* failing(): AsyncGenerator<CodeEvent> {
      yield* [];
      throw new Error("code server went away");
    }
    const iterator = execdCodeEventsOf("ctx1", failing(), "code");
    await iterator.next();
    await expect(iterator.next()).rejects.toThrow("code server went away");
  });

  it("reads exit statuses from the code server's ExitCode errors only", () => {
    expect(exitCodeOf({ name: "ExitCode", value: "exit status 127" })).toBe(127);
    expect(exitCodeOf({ name: "ExitCode", value: "exit status 3" })).toBe(3);
    expect(
      exitCodeOf({ name: "TimeoutError", value: "the cell ran longer than its timeout of 100 ms" }),
    ).toBeUndefined();
    expect(exitCodeOf({ name: "ValueError", value: "3" })).toBeUndefined();
  });
});

describe("execd code languages", () => {
  it("takes Sandpit's languages, refuses OpenSandbox's others as unavailable and anything else as a bad field", () => {
    expect(codeLanguageOf("python")).toBe("python");
    expect(codeLanguageOf("bash")).toBe("bash");
    const java = (() => {
      try {
        codeLanguageOf("java");
      } catch (e) {
        return e as ApiError;
      }
    })();
    expect(java).toBeInstanceOf(ApiError);
    expect(execdErrorReply(java!)).toEqual({
      status: 409,
      body: { code: "NOT_SUPPORTED", message: expect.stringContaining('language "java" is not available') },
    });
    expect(() => codeLanguageOf("cobol")).toThrow(/language: "cobol" is not a language; use one of python/);
  });

  it("answers a missing context as execd's CONTEXT_NOT_FOUND", () => {
    expect(execdErrorReply(new ApiError("code_context_not_found", "context x not found"))).toEqual({
      status: 404,
      body: { code: "CONTEXT_NOT_FOUND", message: "context x not found" },
    });
  });

  it("quotes a directory for bash", () => {
    expect(shellQuote("/tmp/it's here")).toBe("'/tmp/it'\\''s here'");
  });
});
