import { describe, expect, it } from "vitest";
import { parseSse, type SseMessage } from "./sse.js";

async function parse(chunks: string[]): Promise<SseMessage[]> {
  const encoder = new TextEncoder();
  const body = (async function* () {
    for (const c of chunks) yield encoder.encode(c);
  })();
  const out: SseMessage[] = [];
  for await (const m of parseSse(body)) out.push(m);
  return out;
}

describe("parseSse", () => {
  it("parses id, event and data, and skips comments", async () => {
    expect(await parse([': connected\n\nid: 7\nevent: sandbox.created\ndata: {"a":1}\n\n: heartbeat\n\n'])).toEqual([
      { id: "7", event: "sandbox.created", data: '{"a":1}' },
    ]);
  });

  it("keeps a message whose lines are split anywhere across chunks, with CRLF line ends", async () => {
    const text = "id: 12\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\n";
    const chunks = text.split("");
    expect(await parse(chunks)).toEqual([{ id: "12", event: "x", data: "one\ntwo" }]);
  });

  it("reports a position-only message (id without data) and defaults the event name", async () => {
    expect(await parse(["retry: 2000\nid: 3\n\ndata: plain\n\n"])).toEqual([
      { id: "3", event: "message", data: "" },
      { event: "message", data: "plain" },
    ]);
  });

  it("does not dispatch a message that was cut off before its blank line", async () => {
    expect(await parse(["id: 1\ndata: whole\n\nid: 2\ndata: cut"])).toEqual([
      { id: "1", event: "message", data: "whole" },
    ]);
  });
});
