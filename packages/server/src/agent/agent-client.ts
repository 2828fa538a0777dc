/**
 * Client of the in-sandbox agent (docs/agent-protocol.md): HTTP/1.1 over a keep-alive connection
 * pool, one client per sandbox.
 */
import http from "node:http";
import type { Socket } from "node:net";
import { pipeline, type Readable } from "node:stream";
import {
  type AgentExecEvent,
  type AgentExecRequest,
  decodeEvent,
  encodeExecRequest,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
} from "./frames.js";

export type { AgentExecEvent, AgentExecRequest, AgentExit } from "./frames.js";

/** A change seen by the agent's file watch (`ready` first, `overflow` when events were lost). */
export interface AgentWatchEvent {
  type: "ready" | "create" | "modify" | "delete" | "rename" | "chmod" | "overflow";
  path: string;
  from?: string;
  isDir?: boolean;
}

/** An event with the log offset just after its frame. */
export type PositionedEvent = AgentExecEvent & { offset: number };

export interface AgentEndpoint {
  host: string;
  port: number;
  token: string;
}

export interface AgentFileEntry {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  mode: number;
  mtime: string;
  uid: number;
  gid: number;
  target?: string;
}

export interface AgentCommandStatus {
  id: string;
  pid: number;
  running: boolean;
  exitCode: number | null;
  signal: number | null;
  timedOut: boolean;
  truncated: boolean;
  durationMs: number | null;
}

export interface AgentClientOptions {
  /** Time allowed to establish a TCP connection (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Idle keep-alive sockets are closed after this long (default 30 s; the agent's own limit is 10 min). */
  idleSocketTimeoutMs?: number;
}

/** An HTTP-level error answered by the agent. */
export class AgentError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "AgentError";
    this.status = status;
    this.code = code;
  }
}

/** The agent could not be reached (refused, reset, timed out, stream cut): the sandbox may have died. */
export class AgentUnreachableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AgentUnreachableError";
  }
}

type Query = Record<string, string | number | boolean | undefined>;

interface RequestOptions {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Query;
  body?: Uint8Array | Readable;
  contentLength?: number;
  contentType?: string;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /** Safe to send again when a reused keep-alive socket turned out to be closed. */
  idempotent?: boolean;
}

/** Marks failures on a reused keep-alive socket before anything was answered. */
class StaleSocketError extends AgentUnreachableError {}

const MAX_ERROR_BODY = 64 * 1024;
const MAX_JSON_BODY = 64 * 1024 * 1024;

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const e = new Error("the operation was aborted");
  e.name = "AbortError";
  return e;
}

function buildPath(path: string, query: Query | undefined): string {
  if (!query) return path;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === false) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v === true ? "1" : String(v))}`);
  }
  return parts.length ? `${path}?${parts.join("&")}` : path;
}

function errnoCode(e: unknown): string | undefined {
  if (typeof e === "object" && e !== null && "code" in e) {
    const code: unknown = (e as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

// ---- response validation ----

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new AgentError(502, "internal", `agent sent a malformed ${what}`);
  return v as Record<string, unknown>;
}

function get<T>(o: Record<string, unknown>, key: string, what: string, check: (v: unknown) => v is T): T {
  const v = o[key];
  if (!check(v)) throw new AgentError(502, "internal", `agent sent a malformed ${what} (field "${key}")`);
  return v;
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isString = (v: unknown): v is string => typeof v === "string";
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isNumberOrNull = (v: unknown): v is number | null => v === null || isNumber(v);
const isEntryType = (v: unknown): v is AgentFileEntry["type"] =>
  v === "file" || v === "dir" || v === "symlink" || v === "other";

function toEntry(v: unknown): AgentFileEntry {
  const o = asObject(v, "file entry");
  const entry: AgentFileEntry = {
    name: get(o, "name", "file entry", isString),
    path: get(o, "path", "file entry", isString),
    type: get(o, "type", "file entry", isEntryType),
    size: get(o, "size", "file entry", isNumber),
    mode: get(o, "mode", "file entry", isNumber),
    mtime: get(o, "mtime", "file entry", isString),
    uid: get(o, "uid", "file entry", isNumber),
    gid: get(o, "gid", "file entry", isNumber),
  };
  if (typeof o.target === "string") entry.target = o.target;
  return entry;
}

function toStatus(v: unknown): AgentCommandStatus {
  const o = asObject(v, "command status");
  const w = "command status";
  return {
    id: get(o, "id", w, isString),
    pid: get(o, "pid", w, isNumber),
    running: get(o, "running", w, isBoolean),
    exitCode: get(o, "exitCode", w, isNumberOrNull),
    signal: get(o, "signal", w, isNumberOrNull),
    timedOut: get(o, "timedOut", w, isBoolean),
    truncated: get(o, "truncated", w, isBoolean),
    durationMs: get(o, "durationMs", w, isNumberOrNull),
  };
}

export class AgentClient {
  private readonly agent: http.Agent;
  private readonly connectTimeoutMs: number;

  constructor(
    private readonly endpoint: AgentEndpoint,
    options: AgentClientOptions = {},
  ) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.agent = new http.Agent({
      keepAlive: true,
      keepAliveMsecs: 10_000,
      noDelay: true,
      timeout: options.idleSocketTimeoutMs ?? 30_000,
    });
  }

  /** Destroys the pooled sockets (and any request in flight). */
  close(): void {
    this.agent.destroy();
  }

  // ---- health ----

  async health(
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<{ ok: boolean; version: string; pid: number }> {
    const o = asObject(
      await this.json({
        method: "GET",
        path: "/health",
        signal: opts.signal,
        timeoutMs: opts.timeoutMs,
        idempotent: true,
      }),
      "health answer",
    );
    return {
      ok: get(o, "ok", "health answer", isBoolean),
      version: get(o, "version", "health answer", isString),
      pid: get(o, "pid", "health answer", isNumber),
    };
  }

  /**
   * The guest's processes, and how many of their threads are running or ready to run (the agent's own
   * not counted): work that a host too busy to give it CPU would otherwise hide.
   */
  async activity(opts: { timeoutMs?: number } = {}): Promise<{ processes: number; running: number }> {
    const o = asObject(
      await this.json({ method: "GET", path: "/activity", timeoutMs: opts.timeoutMs, idempotent: true }),
      "activity answer",
    );
    return {
      processes: get(o, "processes", "activity answer", isNumber),
      running: get(o, "running", "activity answer", isNumber),
    };
  }

  /**
   * Files that keep gVisor from checkpointing the sandbox: deleted while a process still holds them open,
   * mapped or as its working directory, on its disk (see the agent's checkpoint-blockers.h).
   */
  async checkpointBlockers(): Promise<{ pid: number; command: string; path: string }[]> {
    const v = await this.json({ method: "GET", path: "/checkpoint-blockers", idempotent: true });
    if (!Array.isArray(v)) throw new AgentError(502, "internal", "agent sent a malformed list of checkpoint blockers");
    return v.map((item) => {
      const o = asObject(item, "checkpoint blocker");
      return {
        pid: get(o, "pid", "checkpoint blocker", isNumber),
        command: get(o, "command", "checkpoint blocker", isString),
        path: get(o, "path", "checkpoint blocker", isString),
      };
    });
  }

  // ---- commands ----

  /**
   * Runs a command and yields its events; the last one is `exit`. Aborting the signal, or leaving the
   * loop early, closes the connection, which makes the agent kill the command's process tree.
   */
  exec(req: AgentExecRequest, opts: { signal?: AbortSignal } = {}): AsyncIterable<AgentExecEvent> {
    return this.frames(
      () => ({
        method: "POST",
        path: "/exec",
        body: encodeExecRequest(req),
        contentType: "application/octet-stream",
        signal: opts.signal,
      }),
      opts.signal,
      true,
    );
  }

  async startBackground(req: AgentExecRequest): Promise<{ id: string; pid: number }> {
    const o = asObject(
      await this.json({
        method: "POST",
        path: "/exec",
        body: encodeExecRequest(req, { background: true }),
        contentType: "application/octet-stream",
      }),
      "exec answer",
    );
    return { id: get(o, "id", "exec answer", isString), pid: get(o, "pid", "exec answer", isNumber) };
  }

  async listCommands(): Promise<AgentCommandStatus[]> {
    const v = await this.json({ method: "GET", path: "/commands", idempotent: true });
    if (!Array.isArray(v)) throw new AgentError(502, "internal", "agent sent a malformed command list");
    return v.map(toStatus);
  }

  async commandStatus(id: string): Promise<AgentCommandStatus> {
    return toStatus(await this.json({ method: "GET", path: `/commands/${encodeURIComponent(id)}`, idempotent: true }));
  }

  /**
   * A background command's events from its log, starting at byte `offset` (a frame boundary, e.g.
   * a previous FrameDecoder.offset). With `follow`, the stream stays open until the exit frame.
   */
  /** A background command's events from a log offset; each carries the offset just after it (to resume from). */
  commandEvents(
    id: string,
    opts: { offset?: number; follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncIterable<PositionedEvent> {
    return this.frames(
      () => ({
        method: "GET",
        path: `/commands/${encodeURIComponent(id)}/frames`,
        query: { offset: opts.offset, follow: opts.follow === true },
        signal: opts.signal,
        idempotent: true,
      }),
      opts.signal,
      false,
      opts.offset ?? 0,
    );
  }

  async signalCommand(id: string, signal: number): Promise<void> {
    await this.empty({ method: "POST", path: `/commands/${encodeURIComponent(id)}/signal`, query: { signal } });
  }

  async writeStdin(id: string, data: Uint8Array): Promise<void> {
    await this.empty({
      method: "POST",
      path: `/commands/${encodeURIComponent(id)}/stdin`,
      body: data,
      contentType: "application/octet-stream",
    });
  }

  /** Resizes the terminal of a command started with `pty`. */
  async resizeTerminal(id: string, cols: number, rows: number): Promise<void> {
    await this.empty({ method: "POST", path: `/commands/${encodeURIComponent(id)}/resize`, query: { cols, rows } });
  }

  async closeStdin(id: string): Promise<void> {
    await this.empty({ method: "POST", path: `/commands/${encodeURIComponent(id)}/stdin`, query: { close: true } });
  }

  // ---- files ----

  /** Opens a file; consume or destroy `body`. */
  async readFile(path: string): Promise<{ size: number; body: Readable }> {
    const res = await this.request({ method: "GET", path: "/files", query: { path }, idempotent: true });
    if (res.statusCode !== 200) throw await this.httpError(res);
    const size = Number(res.headers["content-length"]);
    if (!Number.isSafeInteger(size)) {
      res.destroy();
      throw new AgentError(502, "internal", "agent sent a file without Content-Length");
    }
    return { size, body: res };
  }

  /** A small file as UTF-8 text, read whole into memory. */
  async readText(path: string): Promise<string> {
    const { body } = await this.readFile(path);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Writes a file atomically (temp file + rename). A stream body is sent chunked unless `size` is given. */
  async writeFile(
    path: string,
    body: Uint8Array | Readable,
    opts: { mode?: number; mkdirs?: boolean; size?: number; owner?: { uid: number; gid: number } } = {},
  ): Promise<{ size: number }> {
    const o = asObject(
      await this.json({
        method: "PUT",
        path: "/files",
        query: {
          path,
          mode: opts.mode?.toString(8),
          mkdirs: opts.mkdirs === true,
          uid: opts.owner?.uid,
          gid: opts.owner?.gid,
        },
        body,
        ...(opts.size !== undefined ? { contentLength: opts.size } : {}),
        contentType: "application/octet-stream",
        idempotent: true,
      }),
      "write answer",
    );
    return { size: get(o, "size", "write answer", isNumber) };
  }

  async stat(path: string): Promise<AgentFileEntry> {
    return toEntry(await this.json({ method: "GET", path: "/files/stat", query: { path }, idempotent: true }));
  }

  async list(path: string): Promise<AgentFileEntry[]> {
    const v = await this.json({ method: "GET", path: "/files/list", query: { path }, idempotent: true });
    if (!Array.isArray(v)) throw new AgentError(502, "internal", "agent sent a malformed directory listing");
    return v.map(toEntry);
  }

  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.empty({
      method: "DELETE",
      path: "/files",
      query: { path, recursive: opts.recursive === true },
      idempotent: true,
    });
  }

  /** Creates a directory; resolves whether it was created (false: it existed). */
  async mkdir(
    path: string,
    opts: { parents?: boolean; mode?: number; owner?: { uid: number; gid: number } } = {},
  ): Promise<boolean> {
    const o = asObject(
      await this.json({
        method: "POST",
        path: "/files/mkdir",
        query: {
          path,
          parents: opts.parents === true,
          mode: opts.mode?.toString(8),
          uid: opts.owner?.uid,
          gid: opts.owner?.gid,
        },
      }),
      "mkdir answer",
    );
    return get(o, "created", "mkdir answer", isBoolean);
  }

  async move(from: string, to: string): Promise<void> {
    await this.empty({ method: "POST", path: "/files/move", query: { from, to } });
  }

  /**
   * Changes under a directory as they happen (inotify inside the sandbox): the first event is `ready`
   * once the watches are in place. Ends when the signal aborts or the agent closes the stream.
   */
  async *watch(
    path: string,
    opts: { recursive?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<AgentWatchEvent> {
    const res = await this.request({
      method: "GET",
      path: "/files/watch",
      query: { path, recursive: opts.recursive === true },
      signal: opts.signal,
    });
    if (res.statusCode !== 200) throw await this.httpError(res);
    const onAbort = () => res.destroy();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let pending = "";
    try {
      for await (const chunk of res) {
        pending += (chunk as Buffer).toString("utf8");
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) if (line) yield JSON.parse(line) as AgentWatchEvent;
      }
    } catch (e) {
      if (!opts.signal?.aborted) throw new AgentUnreachableError(`agent ${this.where()}: watch cut off`, { cause: e });
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      res.destroy();
    }
  }

  // ---- transport ----

  /** Sends a request and resolves with the response head (any status). */
  private async request(o: RequestOptions): Promise<http.IncomingMessage> {
    try {
      return await this.send(o);
    } catch (e) {
      // A keep-alive socket the agent closed meanwhile: nothing was processed, try once on a new one.
      const replayable = o.idempotent === true && !(o.body !== undefined && !(o.body instanceof Uint8Array));
      if (e instanceof StaleSocketError && replayable) return this.send(o);
      throw e;
    }
  }

  private send(o: RequestOptions): Promise<http.IncomingMessage> {
    const { signal } = o;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { "X-Sandpit-Token": this.endpoint.token };
      if (o.body instanceof Uint8Array) headers["Content-Length"] = o.body.byteLength;
      else if (o.body !== undefined && o.contentLength !== undefined) headers["Content-Length"] = o.contentLength;
      else if (o.body === undefined && (o.method === "POST" || o.method === "PUT")) headers["Content-Length"] = 0;
      if (o.contentType && o.body !== undefined) headers["Content-Type"] = o.contentType;

      const req = http.request({
        host: this.endpoint.host,
        port: this.endpoint.port,
        method: o.method,
        path: buildPath(o.path, o.query),
        headers,
        agent: this.agent,
      });
      let settled = false;
      let connectTimer: NodeJS.Timeout | undefined;
      let totalTimer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (connectTimer) clearTimeout(connectTimer);
        if (totalTimer) clearTimeout(totalTimer);
        signal?.removeEventListener("abort", onAbort);
      };
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        cleanup();
        reject(err);
      };
      const onAbort = () => {
        const err = signal ? abortError(signal) : new Error("aborted");
        req.destroy(err);
        fail(err);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (o.timeoutMs !== undefined) {
        const ms = o.timeoutMs;
        totalTimer = setTimeout(() => {
          const err = new AgentUnreachableError(`agent ${this.where()} did not answer within ${ms} ms`);
          req.destroy(err);
          fail(err);
        }, ms);
      }
      req.on("socket", (socket: Socket) => {
        socket.setNoDelay(true);
        if (socket.connecting) {
          connectTimer = setTimeout(() => {
            const err = new AgentUnreachableError(`connecting to agent ${this.where()} timed out`);
            req.destroy(err);
            fail(err);
          }, this.connectTimeoutMs);
          socket.once("connect", () => {
            if (connectTimer) clearTimeout(connectTimer);
          });
        }
      });
      req.on("error", (e: Error) => {
        if (e instanceof AgentUnreachableError || (signal?.aborted && e === signal.reason)) return fail(e);
        if (signal?.aborted) return fail(abortError(signal));
        const code = errnoCode(e);
        const msg = `agent ${this.where()} unreachable: ${code ?? e.message}`;
        if (req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE"))
          fail(new StaleSocketError(msg, { cause: e }));
        else fail(new AgentUnreachableError(msg, { cause: e }));
      });
      req.on("response", (res: http.IncomingMessage) => {
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        cleanup();
        resolve(res);
      });

      const body = o.body;
      if (body === undefined) {
        req.end();
      } else if (body instanceof Uint8Array) {
        req.end(body);
      } else {
        pipeline(body, req, (err) => {
          if (err && !settled) req.destroy(err);
        });
      }
    });
  }

  private where(): string {
    return `${this.endpoint.host}:${this.endpoint.port}`;
  }

  private async readBody(res: http.IncomingMessage, limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res) {
        const b = chunk as Buffer;
        size += b.length;
        if (size > limit) {
          res.destroy();
          throw new AgentError(502, "internal", `agent answer exceeds ${limit} bytes`);
        }
        chunks.push(b);
      }
    } catch (e) {
      if (e instanceof AgentError) throw e;
      throw new AgentUnreachableError(`agent ${this.where()}: response cut off`, { cause: e });
    }
    return Buffer.concat(chunks, size);
  }

  private async httpError(res: http.IncomingMessage): Promise<AgentError> {
    const status = res.statusCode ?? 0;
    let code = status === 404 ? "not_found" : "internal";
    let message = `agent answered ${status}`;
    const body = await this.readBody(res, MAX_ERROR_BODY).catch(() => Buffer.alloc(0));
    try {
      const v: unknown = JSON.parse(body.toString("utf8"));
      if (typeof v === "object" && v !== null) {
        const o = v as Record<string, unknown>;
        if (typeof o.code === "string") code = o.code;
        if (typeof o.message === "string") message = o.message;
      }
    } catch {
      if (body.length) message = `${message}: ${body.toString("utf8").slice(0, 200)}`;
    }
    return new AgentError(status, code, message);
  }

  private async json(o: RequestOptions): Promise<unknown> {
    const res = await this.request(o);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw await this.httpError(res);
    const body = await this.readBody(res, MAX_JSON_BODY);
    try {
      return JSON.parse(body.toString("utf8")) as unknown;
    } catch {
      throw new AgentError(502, "internal", `agent sent invalid JSON (${status})`);
    }
  }

  private async empty(o: RequestOptions): Promise<void> {
    const res = await this.request(o);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw await this.httpError(res);
    await this.readBody(res, MAX_ERROR_BODY);
  }

  private async *frames(
    options: () => RequestOptions,
    signal: AbortSignal | undefined,
    requireExit: boolean,
    startOffset = 0,
  ): AsyncGenerator<PositionedEvent> {
    const o = options();
    const res = await this.request(o);
    if (res.statusCode !== 200) throw await this.httpError(res);
    const decoder = new FrameDecoder();
    let position = startOffset;
    let sawExit = false;
    const onAbort = () => res.destroy(signal ? abortError(signal) : undefined);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw abortError(signal);
      try {
        for await (const chunk of res) {
          for (const frame of decoder.push(chunk as Buffer)) {
            const event = decodeEvent(frame);
            if (event.type === "exit") sawExit = true;
            position += FRAME_HEADER_BYTES + frame.payload.length;
            yield Object.assign(event, { offset: position });
          }
        }
      } catch (e) {
        if (signal?.aborted) throw abortError(signal);
        if (e instanceof FrameError) throw e;
        throw new AgentUnreachableError(`agent ${this.where()}: stream cut off`, { cause: e });
      }
      decoder.finish();
      if (requireExit && !sawExit) {
        throw new AgentUnreachableError(`agent ${this.where()} ended the stream before the exit frame`);
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // Leaving early (break, abort, error): closing the connection is what stops a foreground command.
      if (!res.complete) res.destroy();
    }
  }
}
