/**
 * Wire formats of the in-sandbox agent (docs/agent-protocol.md):
 * - the body of `POST /exec`: NUL-terminated `key=value` fields, an empty field, then stdin bytes;
 * - the response frames of commands: `type:u8 | length:u32be | payload`.
 */

export interface AgentExecRequest {
  id: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  timeoutMs?: number;
  stdin?: Uint8Array;
  stdinOpen?: boolean;
  uid?: number;
  gid?: number;
  maxOutputBytes?: number;
  /** Run on a new terminal of this size: stdin, stdout and stderr are the terminal (output is stdout). */
  pty?: { cols: number; rows: number };
}

export interface AgentExit {
  exitCode: number;
  signal: number | null;
  timedOut: boolean;
  truncated: boolean;
  durationMs: number;
}

export type AgentExecEvent =
  | { type: "started"; pid: number }
  | { type: "stdout"; data: Buffer }
  | { type: "stderr"; data: Buffer }
  | { type: "error"; code: string; message: string }
  | ({ type: "exit" } & AgentExit);

export const FRAME_STDOUT = 1;
export const FRAME_STDERR = 2;
export const FRAME_EXIT = 3;
export const FRAME_STARTED = 4;
export const FRAME_ERROR = 5;

export const FRAME_HEADER_BYTES = 5;
/** The agent sends at most 64 KiB per frame; anything far larger means the stream is corrupt. */
export const MAX_FRAME_PAYLOAD = 16 * 1024 * 1024;

export interface Frame {
  type: number;
  payload: Buffer;
}

/** A malformed frame stream or frame payload. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/**
 * Incremental frame decoder: feed it chunks as they arrive (a frame may be split across any number
 * of chunks, a chunk may hold many frames) and get back the complete frames.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private consumed = 0;
  private header: { type: number; length: number } | undefined;

  /** Bytes of complete frames decoded so far: the log offset to resume from. */
  get offset(): number {
    return this.consumed;
  }

  /** Bytes received that do not form a complete frame yet. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Frame[] {
    if (chunk.byteLength > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.buffered += chunk.byteLength;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (!this.header) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const h = this.take(FRAME_HEADER_BYTES);
        const type = h.readUInt8(0);
        const length = h.readUInt32BE(1);
        if (length > MAX_FRAME_PAYLOAD) {
          throw new FrameError(`frame of ${length} bytes exceeds the ${MAX_FRAME_PAYLOAD} byte limit`);
        }
        this.header = { type, length };
      }
      if (this.buffered < this.header.length) break;
      const payload = this.header.length === 0 ? Buffer.alloc(0) : this.take(this.header.length);
      frames.push({ type: this.header.type, payload });
      this.consumed += FRAME_HEADER_BYTES + this.header.length;
      this.header = undefined;
    }
    return frames;
  }

  /** Throws when the stream ended in the middle of a frame. */
  finish(): void {
    if (this.header || this.buffered > 0) {
      throw new FrameError(`stream ended inside a frame (${this.buffered} bytes pending)`);
    }
  }

  /** Removes n bytes (n <= buffered) from the front, copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      if (!c) throw new FrameError("internal: decoder buffer underflow");
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}

export function encodeFrame(type: number, payload: Uint8Array | string): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

function parseJsonObject(frame: Frame, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(frame.payload.toString("utf8"));
  } catch {
    throw new FrameError(`${what} frame is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FrameError(`${what} frame is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function field<T>(o: Record<string, unknown>, key: string, what: string, check: (v: unknown) => v is T): T {
  const v = o[key];
  if (!check(v)) throw new FrameError(`${what} frame: bad "${key}"`);
  return v;
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isString = (v: unknown): v is string => typeof v === "string";
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isNumberOrNull = (v: unknown): v is number | null => v === null || isNumber(v);

/** The event a frame stands for. Unknown frame types are a FrameError. */
export function decodeEvent(frame: Frame): AgentExecEvent {
  switch (frame.type) {
    case FRAME_STDOUT:
      return { type: "stdout", data: frame.payload };
    case FRAME_STDERR:
      return { type: "stderr", data: frame.payload };
    case FRAME_STARTED: {
      const o = parseJsonObject(frame, "started");
      return { type: "started", pid: field(o, "pid", "started", isNumber) };
    }
    case FRAME_ERROR: {
      const o = parseJsonObject(frame, "error");
      return {
        type: "error",
        code: field(o, "code", "error", isString),
        message: field(o, "message", "error", isString),
      };
    }
    case FRAME_EXIT: {
      const o = parseJsonObject(frame, "exit");
      return {
        type: "exit",
        exitCode: field(o, "exitCode", "exit", isNumber),
        signal: field(o, "signal", "exit", isNumberOrNull),
        timedOut: field(o, "timedOut", "exit", isBoolean),
        truncated: field(o, "truncated", "exit", isBoolean),
        durationMs: field(o, "durationMs", "exit", isNumber),
      };
    }
    default:
      throw new FrameError(`unknown frame type ${frame.type}`);
  }
}

function checkUint(name: string, v: number): string {
  if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${name} must be a non-negative integer, got ${v}`);
  return String(v);
}

/** The body of `POST /exec`. */
export function encodeExecRequest(req: AgentExecRequest, opts: { background?: boolean } = {}): Buffer {
  if (req.args.length === 0) throw new TypeError("args must not be empty");
  const parts: Buffer[] = [];
  const put = (key: string, value: string) => {
    if (value.includes("\0")) throw new TypeError(`${key} must not contain NUL characters`);
    parts.push(Buffer.from(`${key}=${value}\0`, "utf8"));
  };
  put("id", req.id);
  for (const a of req.args) put("arg", a);
  for (const [k, v] of Object.entries(req.env)) {
    if (k.length === 0 || k.includes("=")) throw new TypeError(`invalid environment variable name "${k}"`);
    put("env", `${k}=${v}`);
  }
  put("cwd", req.cwd);
  if (req.timeoutMs !== undefined && req.timeoutMs > 0) {
    put("timeout_ms", checkUint("timeoutMs", Math.ceil(req.timeoutMs)));
  }
  if (req.uid !== undefined) put("uid", checkUint("uid", req.uid));
  if (req.gid !== undefined) put("gid", checkUint("gid", req.gid));
  if (req.maxOutputBytes !== undefined) put("max_output", checkUint("maxOutputBytes", req.maxOutputBytes));
  if (opts.background) put("background", "1");
  if (req.stdinOpen) put("stdin_open", "1");
  if (req.pty) {
    put("pty", "1");
    put("cols", checkUint("cols", req.pty.cols));
    put("rows", checkUint("rows", req.pty.rows));
  }
  parts.push(Buffer.from([0]));
  if (req.stdin && req.stdin.byteLength > 0) {
    parts.push(Buffer.from(req.stdin.buffer, req.stdin.byteOffset, req.stdin.byteLength));
  }
  return Buffer.concat(parts);
}
