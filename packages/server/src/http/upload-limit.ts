import type http from "node:http";
import type { Readable, Transform } from "node:stream";
import zlib from "node:zlib";
import Busboy from "busboy";
import { ApiError } from "../errors.js";
import { byteLimit, FRAMING_ALLOWANCE, UploadBudget, uploadTooLarge } from "../lib/upload-budget.js";

const DECODERS: Record<string, () => Transform> = {
  gzip: () => zlib.createGunzip(),
  "x-gzip": () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

/** The codings of a Content-Encoding header in the order they must be undone; identity is none. */
function contentCodings(header: string | string[] | undefined): string[] {
  const codings = String(header ?? "")
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  for (const coding of codings) {
    if (!DECODERS[coding]) {
      throw new ApiError(
        "bad_request",
        `content-encoding: ${coding} is not supported (gzip, deflate, br or identity)`,
        { header: "content-encoding" },
      );
    }
  }
  return codings.reverse();
}

/**
 * An upload's body as it will be written: decoded (Content-Encoding gzip, deflate or br) and metered, so
 * that it fails with the 413 at the first decoded byte over `limit` (a few KB of gzip cannot become a
 * huge file). `size` is the declared length when it is also the decoded one; over the limit, the
 * request is refused from its headers, before anything is read (and before `100 Continue`, see
 * `answerBeforeBody`). On any failure the request itself is only unpiped, never destroyed: its
 * connection still carries the answer. `allowance` adds framing bytes for container formats.
 */
export function uploadBody(
  req: http.IncomingMessage,
  limit: number,
  allowance = 0,
): { body: Readable; size: number | undefined } {
  const codings = contentCodings(req.headers["content-encoding"]);
  const declared = req.headers["content-length"] === undefined ? undefined : Number(req.headers["content-length"]);
  if (codings.length === 0 && declared !== undefined && declared > limit + allowance) {
    throw uploadTooLarge(limit, declared);
  }
  const meter = byteLimit(limit + allowance);
  const decoders = codings.map((coding) => {
    const decoder = DECODERS[coding]!();
    decoder.on("error", (e) =>
      meter.destroy(new ApiError("bad_request", `the body is not valid ${coding} (content-encoding): ${e.message}`)),
    );
    return decoder;
  });
  const stages: Transform[] = [...decoders, meter];
  let upstream: Readable = req;
  for (const stage of stages) upstream = upstream.pipe(stage);
  const stop = () => {
    req.unpipe(stages[0]);
    for (const decoder of decoders) decoder.destroy();
  };
  meter.on("error", stop);
  meter.on("close", stop);
  // A client that goes away mid-body: the writer must not wait for the rest.
  req.on("close", () => {
    if (!req.complete) meter.destroy(new Error("the client closed the connection before the body ended"));
  });
  return { body: meter, size: codings.length === 0 ? declared : undefined };
}

/** Reads `body` into `write` and, when that fails, answers with why the body failed (the 413) if it did. */
export async function writeUpload<T>(body: Readable, write: (body: Readable) => Promise<T>): Promise<T> {
  try {
    return await write(body);
  } catch (e) {
    throw body.errored ?? e;
  }
}

export interface MultipartHandlers {
  /**
   * A file part: the write that reads `stream` to its end, or undefined to skip the part. Parts named in
   * `notContent` (metadata sent as a file) are not charged to the limit: their handler bounds them.
   */
  file(field: string, stream: Readable, info: Busboy.FileInfo): Promise<unknown> | undefined;
  field?(name: string, value: string): void;
}

/**
 * Reads a multipart upload: every file part goes to `handlers.file`, metered against one budget of
 * `limit` decoded bytes for all of them (the body as a whole may add `FRAMING_ALLOWANCE`). The first
 * failure (a 413, a malformed body, a write or a handler that failed) stops the parsing and every part,
 * waits until the writes have given up (their partial files are gone), and rejects with that failure.
 */
export async function receiveMultipart(
  req: http.IncomingMessage,
  limit: number,
  handlers: MultipartHandlers,
  opts: { preservePath?: boolean; notContent?: string[] } = {},
): Promise<void> {
  let parser: Busboy.Busboy;
  try {
    parser = Busboy({ headers: req.headers, preservePath: opts.preservePath ?? false });
  } catch (e) {
    throw new ApiError("bad_request", `not a multipart upload: ${e instanceof Error ? e.message : e}`);
  }
  const { body } = uploadBody(req, limit, FRAMING_ALLOWANCE);
  const budget = new UploadBudget(limit);
  const parts = new Set<Readable>();
  const writes: Promise<unknown>[] = [];
  let failure: unknown;
  let stopped!: (e: unknown) => void;
  const failed = new Promise<never>((_resolve, reject) => {
    stopped = reject;
  });
  failed.catch(() => undefined);
  const fail = (e: unknown) => {
    if (failure !== undefined) return;
    failure = e;
    body.unpipe(parser);
    body.destroy();
    parser.destroy();
    for (const part of parts) part.destroy(e instanceof Error ? e : new Error(String(e)));
    stopped(e);
  };
  const parsed = new Promise<void>((resolve) => {
    parser.on("field", (name, value) => {
      try {
        handlers.field?.(name, value);
      } catch (e) {
        fail(e);
      }
    });
    parser.on("file", (field, stream, info) => {
      const metered = opts.notContent?.includes(field) ? stream : budget.metered(stream);
      metered.on("error", fail);
      parts.add(metered);
      let write: Promise<unknown> | undefined;
      try {
        write = handlers.file(field, metered, info);
      } catch (e) {
        fail(e);
        return;
      }
      if (!write) {
        metered.resume();
        return;
      }
      writes.push(write.catch((e: unknown) => fail(metered.errored ?? e)));
    });
    parser.on("error", (e) => fail(new ApiError("bad_request", `malformed multipart body: ${(e as Error).message}`)));
    parser.on("close", resolve);
    body.on("error", fail);
    body.pipe(parser);
  });
  try {
    await Promise.race([parsed, failed]);
    await Promise.race([Promise.all(writes), failed]);
  } finally {
    // Writes stopped by a failure give up quickly: waiting lets them remove their partial files first.
    await Promise.allSettled(writes);
  }
  if (failure !== undefined) throw failure;
}

/** How long a client still sending a body that was answered before it was read may go on. */
const LINGER_MS = 30_000;

/**
 * Requests answered before their body was read (an upload refused from its headers or midway):
 * - Node answers `Expect: 100-continue` with `100 Continue` before any handler runs, so a client would be
 *   told to send a body that is about to be refused. Here `100 Continue` goes only once something starts
 *   reading the body; a request refused before that gets its final answer with `Connection: close`: the
 *   client sends nothing, and the connection, which still owes a body, is not reused.
 * - Without it the client is already sending. The rest of the body is read and thrown away (for at most
 *   `lingerMs`), so that the client gets to read the answer: closing at once would reset the connection
 *   under a client still writing (fetch fails with EPIPE instead of showing the 413).
 */
export function answerBeforeBody(server: http.Server, lingerMs = LINGER_MS): void {
  server.on("checkContinue", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const keepAlive = res.shouldKeepAlive;
    res.shouldKeepAlive = false;
    const read = req._read;
    req._read = function (this: http.IncomingMessage, size: number) {
      req._read = read;
      if (!res.headersSent) {
        res.shouldKeepAlive = keepAlive;
        res.writeContinue();
      }
      read.call(this, size);
    };
    server.emit("request", req, res);
  });
  server.prependListener("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.once("finish", () => {
      if (req.complete || req.socket.destroyed) return;
      const giveUp = setTimeout(() => req.socket.destroy(), lingerMs);
      giveUp.unref();
      const done = () => clearTimeout(giveUp);
      req.once("end", done);
      req.socket.once("close", done);
      // Node already discards the body of a request nothing read; one a handler stopped reading is paused.
      req.resume();
    });
  });
}
