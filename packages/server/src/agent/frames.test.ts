import { describe, expect, it } from "vitest";
import {
  decodeEvent,
  encodeExecRequest,
  encodeFrame,
  FRAME_ERROR,
  FRAME_EXIT,
  FRAME_STARTED,
  FRAME_STDERR,
  FRAME_STDOUT,
  type Frame,
  FrameDecoder,
  FrameError,
  MAX_FRAME_PAYLOAD,
} from "./frames.js";

const exitJson = '{"exitCode":3,"signal":null,"timedOut":false,"truncated":true,"durationMs":12}';

function sampleStream(): { bytes: Buffer; frames: Frame[] } {
  const frames: Frame[] = [
    { type: FRAME_STARTED, payload: Buffer.from('{"pid":42}') },
    { type: FRAME_STDOUT, payload: Buffer.from("hello\n") },
    { type: FRAME_STDERR, payload: Buffer.alloc(0) },
    { type: FRAME_STDOUT, payload: Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251)) },
    { type: FRAME_EXIT, payload: Buffer.from(exitJson) },
  ];
  return { bytes: Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload))), frames };
}

/** Frames as comparable summaries (deep-equal on large Buffers is slow). */
function summary(frames: Frame[]): string[] {
  return frames.map((f) => `${f.type}:${f.payload.length}:${f.payload.toString("base64")}`);
}

function decodeAll(chunks: Buffer[]): { frames: Frame[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder();
  const frames = chunks.flatMap((c) => decoder.push(c));
  return { frames, decoder };
}

describe("FrameDecoder", () => {
  it("decodes many frames from one chunk", () => {
    const { bytes, frames } = sampleStream();
    const { frames: got, decoder } = decodeAll([bytes]);
    expect(summary(got)).toEqual(summary(frames));
    expect(decoder.offset).toBe(bytes.length);
    expect(decoder.pending).toBe(0);
    expect(() => decoder.finish()).not.toThrow();
  });

  it("decodes frames split into single bytes", () => {
    const { bytes, frames } = sampleStream();
    const chunks: Buffer[] = Array.from(bytes.subarray(0, 2000), (b) => Buffer.from([b]));
    chunks.push(bytes.subarray(2000));
    expect(summary(decodeAll(chunks).frames)).toEqual(summary(frames));
  });

  it("decodes frames at every split point of two chunks", () => {
    const frames = [
      { type: FRAME_STARTED, payload: Buffer.from('{"pid":1}') },
      { type: FRAME_STDOUT, payload: Buffer.from("abc") },
      { type: FRAME_EXIT, payload: Buffer.from(exitJson) },
    ];
    const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.type, f.payload)));
    for (let i = 0; i <= bytes.length; i++) {
      expect(decodeAll([bytes.subarray(0, i), bytes.subarray(i)]).frames).toEqual(frames);
    }
  });

  it("decodes random chunkings", () => {
    const { bytes, frames } = sampleStream();
    let seed = 12345;
    const rand = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 50; round++) {
      const chunks: Buffer[] = [];
      for (let off = 0; off < bytes.length; ) {
        const n = 1 + (rand() % 9000);
        chunks.push(bytes.subarray(off, off + n));
        off += n;
      }
      expect(summary(decodeAll(chunks).frames)).toEqual(summary(frames));
    }
  });

  it("tracks the offset of complete frames only", () => {
    const a = encodeFrame(FRAME_STDOUT, "12345");
    const b = encodeFrame(FRAME_STDERR, "xyz");
    const d = new FrameDecoder();
    expect(d.push(Buffer.concat([a, b.subarray(0, 4)]))).toHaveLength(1);
    expect(d.offset).toBe(a.length);
    expect(d.pending).toBe(4);
    expect(() => d.finish()).toThrow(FrameError);
    expect(d.push(b.subarray(4))).toEqual([{ type: FRAME_STDERR, payload: Buffer.from("xyz") }]);
    expect(d.offset).toBe(a.length + b.length);
    expect(() => d.finish()).not.toThrow();
  });

  it("accepts Uint8Array chunks that are not Buffers", () => {
    const bytes = encodeFrame(FRAME_STDOUT, "hi");
    const d = new FrameDecoder();
    expect(d.push(new Uint8Array(bytes))).toEqual([{ type: FRAME_STDOUT, payload: Buffer.from("hi") }]);
  });

  it("rejects absurd frame lengths", () => {
    const h = Buffer.alloc(5);
    h.writeUInt8(FRAME_STDOUT, 0);
    h.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 1);
    expect(() => new FrameDecoder().push(h)).toThrow(FrameError);
  });

  it("throws on a stream that ends inside a header", () => {
    const d = new FrameDecoder();
    d.push(Buffer.from([1, 0, 0]));
    expect(() => d.finish()).toThrow(/inside a frame/);
  });
});

describe("decodeEvent", () => {
  it("maps every frame type", () => {
    expect(decodeEvent({ type: FRAME_STARTED, payload: Buffer.from('{"pid":7}') })).toEqual({
      type: "started",
      pid: 7,
    });
    expect(decodeEvent({ type: FRAME_STDOUT, payload: Buffer.from("o") })).toEqual({
      type: "stdout",
      data: Buffer.from("o"),
    });
    expect(decodeEvent({ type: FRAME_STDERR, payload: Buffer.from("e") })).toEqual({
      type: "stderr",
      data: Buffer.from("e"),
    });
    expect(
      decodeEvent({ type: FRAME_ERROR, payload: Buffer.from('{"code":"not_found","message":"exec x: No such file"}') }),
    ).toEqual({ type: "error", code: "not_found", message: "exec x: No such file" });
    expect(decodeEvent({ type: FRAME_EXIT, payload: Buffer.from(exitJson) })).toEqual({
      type: "exit",
      exitCode: 3,
      signal: null,
      timedOut: false,
      truncated: true,
      durationMs: 12,
    });
    expect(
      decodeEvent({
        type: FRAME_EXIT,
        payload: Buffer.from('{"exitCode":137,"signal":9,"timedOut":true,"truncated":false,"durationMs":500}'),
      }),
    ).toMatchObject({ exitCode: 137, signal: 9, timedOut: true });
  });

  it("rejects unknown types and malformed payloads", () => {
    expect(() => decodeEvent({ type: 9, payload: Buffer.alloc(0) })).toThrow(FrameError);
    expect(() => decodeEvent({ type: FRAME_STARTED, payload: Buffer.from("{") })).toThrow(FrameError);
    expect(() => decodeEvent({ type: FRAME_STARTED, payload: Buffer.from("[1]") })).toThrow(FrameError);
    expect(() => decodeEvent({ type: FRAME_STARTED, payload: Buffer.from('{"pid":"1"}') })).toThrow(/pid/);
    expect(() => decodeEvent({ type: FRAME_EXIT, payload: Buffer.from('{"exitCode":0}') })).toThrow(FrameError);
  });
});

function fields(body: Buffer): { fields: string[]; stdin: Buffer } {
  const out: string[] = [];
  let pos = 0;
  for (;;) {
    const nul = body.indexOf(0, pos);
    if (nul < 0) throw new Error("unterminated field");
    if (nul === pos) return { fields: out, stdin: body.subarray(nul + 1) };
    out.push(body.subarray(pos, nul).toString("utf8"));
    pos = nul + 1;
  }
}

describe("encodeExecRequest", () => {
  it("encodes all fields, then an empty field, then stdin", () => {
    const stdin = new Uint8Array([0, 1, 2, 0, 255]);
    const body = encodeExecRequest({
      id: "c1",
      args: ["sh", "-c", "echo 'a=b' ü"],
      env: { PATH: "/usr/bin:/bin", EMPTY: "", EQ: "x=y" },
      cwd: "/home/user",
      timeoutMs: 1500.2,
      stdin,
      stdinOpen: true,
      uid: 1000,
      gid: 0,
      maxOutputBytes: 1024,
    });
    const { fields: f, stdin: rest } = fields(body);
    expect(f).toEqual([
      "id=c1",
      "arg=sh",
      "arg=-c",
      "arg=echo 'a=b' ü",
      "env=PATH=/usr/bin:/bin",
      "env=EMPTY=",
      "env=EQ=x=y",
      "cwd=/home/user",
      "timeout_ms=1501",
      "uid=1000",
      "gid=0",
      "max_output=1024",
      "stdin_open=1",
    ]);
    expect(Buffer.from(rest)).toEqual(Buffer.from(stdin));
  });

  it("marks background requests and omits unset options", () => {
    const body = encodeExecRequest({ id: "b", args: ["true"], env: {}, cwd: "/", timeoutMs: 0 }, { background: true });
    expect(fields(body)).toEqual({ fields: ["id=b", "arg=true", "cwd=/", "background=1"], stdin: Buffer.alloc(0) });
    expect(body[body.length - 1]).toBe(0);
    expect(body[body.length - 2]).toBe(0);
  });

  it("rejects what cannot be encoded", () => {
    const base = { id: "x", args: ["a"], env: {}, cwd: "/" };
    expect(() => encodeExecRequest({ ...base, args: [] })).toThrow(TypeError);
    expect(() => encodeExecRequest({ ...base, args: ["a\0b"] })).toThrow(/NUL/);
    expect(() => encodeExecRequest({ ...base, env: { "A=B": "1" } })).toThrow(TypeError);
    expect(() => encodeExecRequest({ ...base, env: { "": "1" } })).toThrow(TypeError);
    expect(() => encodeExecRequest({ ...base, env: { A: "\0" } })).toThrow(TypeError);
    expect(() => encodeExecRequest({ ...base, uid: -1 })).toThrow(TypeError);
    expect(() => encodeExecRequest({ ...base, maxOutputBytes: 1.5 })).toThrow(TypeError);
  });
});
