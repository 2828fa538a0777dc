import { execStreamEventSchema } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { NetworkError, ServerError } from "./errors.js";
import { parseNdjson, parseNdjsonEvents } from "./ndjson.js";

function chunks(...parts: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(typeof part === "string" ? encoder.encode(part) : part);
      controller.close();
    },
  });
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const values: T[] = [];
  for await (const value of iterable) values.push(value);
  return values;
}

describe("parseNdjson", () => {
  it("joins lines split across chunks", async () => {
    const values = await collect(parseNdjson(chunks('{"a":', "1}\n{", '"b":2}\n{"c"', ":3}\n")));
    expect(values).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }]);
  });

  it("yields several lines from one chunk", async () => {
    expect(await collect(parseNdjson(chunks('{"a":1}\n{"a":2}\n{"a":3}\n')))).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
  });

  it("decodes a multi-byte character split between chunks", async () => {
    const bytes = new TextEncoder().encode('{"data":"héllo €"}\n');
    const euro = bytes.indexOf(0xe2);
    const values = await collect(parseNdjson(chunks(bytes.slice(0, euro + 1), bytes.slice(euro + 1))));
    expect(values).toEqual([{ data: "héllo €" }]);
  });

  it("accepts CRLF, blank lines and a last line without a newline", async () => {
    expect(await collect(parseNdjson(chunks('{"a":1}\r\n\r\n\n{"a":2}')))).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it("yields nothing for an empty stream", async () => {
    expect(await collect(parseNdjson(chunks()))).toEqual([]);
  });

  it("rejects a line that is not JSON", async () => {
    await expect(collect(parseNdjson(chunks('{"a":1}\nnot json\n')))).rejects.toBeInstanceOf(ServerError);
  });

  it("turns a broken stream into a NetworkError", async () => {
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(new TextEncoder().encode('{"a":1}\n'));
        } else {
          controller.error(new TypeError("terminated"));
        }
      },
    });
    const seen: unknown[] = [];
    const consume = async () => {
      for await (const value of parseNdjson(body)) seen.push(value);
    };
    await expect(consume()).rejects.toBeInstanceOf(NetworkError);
    expect(seen).toEqual([{ a: 1 }]);
  });
});

describe("parseNdjsonEvents", () => {
  it("validates every event against the schema", async () => {
    const stream = chunks(
      '{"type":"start","commandId":"cmd_1","pid":7}\n{"type":"stdout","data":"hi\\n"}\n',
      '{"type":"exit","exitCode":0,"durationMs":3,"timedOut":false,"truncated":false}\n',
    );
    const events = await collect(parseNdjsonEvents(execStreamEventSchema, stream));
    expect(events.map((e) => e.type)).toEqual(["start", "stdout", "exit"]);
  });

  it("rejects an event of the wrong shape", async () => {
    const stream = chunks('{"type":"stdout","data":42}\n');
    await expect(collect(parseNdjsonEvents(execStreamEventSchema, stream))).rejects.toMatchObject({
      code: "invalid_response",
    });
  });
});
