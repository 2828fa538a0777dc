import { describe, expect, it } from "vitest";
import { addEvent, cellDuration, ndjsonValues, type OutputBlock, resultView } from "./code-output";

describe("code cell output", () => {
  it("shows an image first, then HTML, JSON, markdown and plain text", () => {
    expect(resultView({ "image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>" })).toEqual({
      kind: "image",
      src: "data:image/png;base64,iVBORw0KGgo=",
      mime: "image/png",
    });
    expect(resultView({ "text/html": "<table></table>", "text/plain": "df" })).toEqual({
      kind: "html",
      html: "<table></table>",
    });
    expect(resultView({ "application/json": { a: 1 }, "text/plain": "{'a': 1}" })).toEqual({
      kind: "text",
      text: '{\n  "a": 1\n}',
      mime: "application/json",
    });
    expect(resultView({ "text/markdown": "# hi", "text/plain": "hi" })).toMatchObject({ text: "# hi" });
    expect(resultView({ "text/plain": "42" })).toEqual({ kind: "text", text: "42", mime: "text/plain" });
    expect(resultView({ "application/x-unknown": "?" })).toBeUndefined();
  });

  it("shows an SVG as an image URL, never as markup", () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>';
    const view = resultView({ "image/svg+xml": svg });
    expect(view?.kind).toBe("image");
    expect(view?.kind === "image" && view.src.startsWith("data:image/svg+xml;charset=utf-8,%3Csvg")).toBe(true);
    expect(view?.kind === "image" && decodeURIComponent(view.src.split(",")[1]!)).toBe(svg);
  });

  it("joins consecutive output of one stream and keeps the order of everything else", () => {
    let blocks: OutputBlock[] = [];
    blocks = addEvent(blocks, { type: "stdout", text: "a" });
    blocks = addEvent(blocks, { type: "stdout", text: "b\n" });
    blocks = addEvent(blocks, { type: "stderr", text: "warn\n" });
    blocks = addEvent(blocks, { type: "stdout", text: "c\n" });
    blocks = addEvent(blocks, { type: "result", isMainResult: true, data: { "text/plain": "1" } });
    blocks = addEvent(blocks, { type: "error", name: "E", value: "v", traceback: "tb" });
    blocks = addEvent(blocks, { type: "end", status: "error", executionCount: 1, durationMs: 3 });
    expect(blocks).toEqual([
      { kind: "stdout", text: "ab\n" },
      { kind: "stderr", text: "warn\n" },
      { kind: "stdout", text: "c\n" },
      { kind: "result", isMainResult: true, view: { kind: "text", text: "1", mime: "text/plain" } },
      { kind: "error", name: "E", value: "v", traceback: "tb" },
    ]);
  });

  it("shows a cell's run time in milliseconds below a second", () => {
    expect(cellDuration(12.4)).toBe("12 ms");
    expect(cellDuration(4200)).toBe("4s");
  });

  it("parses NDJSON split anywhere across chunks", async () => {
    const encoder = new TextEncoder();
    const parts = ['{"a":', '1}\n{"b"', ':"é', '"}\n', '{"c":3}'];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(encoder.encode(part));
        controller.close();
      },
    });
    const values: unknown[] = [];
    for await (const value of ndjsonValues(body)) values.push(value);
    expect(values).toEqual([{ a: 1 }, { b: "é" }, { c: 3 }]);
  });
});
