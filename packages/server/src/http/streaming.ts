import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { nextWithin } from "../lib/next-within.js";
import { writeOrWait } from "./write-or-wait.js";

/** How one kind of streamed response writes its items, its failure, and (optionally) its keep-alives. */
export interface StreamFormat {
  headers: Record<string, string>;
  encode(item: unknown): string;
  /** The last chunk of a stream whose source failed after the response started. */
  encodeError(error: unknown): string;
  /** A chunk sent whenever the source has been quiet for `everyMs`. */
  keepAlive?: { everyMs: number; chunk(): string };
  /** Start the response before the first item (for streams whose callers checked up front what could fail). */
  startAtOnce?: boolean;
}

/**
 * Sends an async iterable as a streamed response. Unless the format starts at once, the first item is
 * awaited before the response starts, so errors that happen up front (404, 409) are ordinary JSON errors;
 * later errors end the stream with the format's error chunk. `onAbort` runs when the client goes away
 * before the end.
 */
export async function sendStream(
  request: FastifyRequest,
  reply: FastifyReply,
  items: AsyncIterable<unknown>,
  format: StreamFormat,
  onAbort?: () => void,
): Promise<void> {
  const iterator = items[Symbol.asyncIterator]();
  const first = format.startAtOnce ? undefined : await iterator.next();
  reply.hijack();
  const res = reply.raw;
  let finished = false;
  res.on("close", () => {
    if (!finished) onAbort?.();
  });
  res.writeHead(200, { ...format.headers, "x-request-id": request.id });
  res.flushHeaders();
  /** The next item, with keep-alives while the source is quiet; undefined when the client went away. */
  const next = async (): Promise<IteratorResult<unknown> | undefined> => {
    const pending = iterator.next();
    if (!format.keepAlive) return pending;
    let arrived = await nextWithin(pending, format.keepAlive.everyMs);
    while (arrived === undefined && !res.destroyed) {
      await writeOrWait(res, format.keepAlive.chunk());
      arrived = await nextWithin(pending, format.keepAlive.everyMs);
    }
    return arrived;
  };
  try {
    let item = first ?? (await next());
    while (item && !item.done && !res.destroyed) {
      // Chunks that come in one burst (a command's exit and the end of the stream) leave in one packet.
      if (!res.writableCorked) {
        res.cork();
        setImmediate(() => res.uncork());
      }
      await writeOrWait(res, format.encode(item.value));
      if (res.destroyed) break;
      item = await next();
    }
  } catch (e) {
    request.log.warn({ err: e }, "stream failed");
    if (!res.destroyed) res.write(format.encodeError(e));
  } finally {
    finished = true;
    res.end();
    await iterator.return?.();
  }
}

/** `application/x-ndjson`: one JSON value per line; a failure ends the stream with an `error` line. */
export function ndjsonFormat(options: { startAtOnce?: boolean } = {}): StreamFormat {
  return {
    headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" },
    encode: (item) => `${JSON.stringify(item)}\n`,
    encodeError: (e) => {
      const error =
        e instanceof ApiError ? { code: e.code, message: e.message } : { code: "internal", message: String(e) };
      return `${JSON.stringify({ type: "error", ...error })}\n`;
    },
    ...options,
  };
}

/** Sends an async iterable as `application/x-ndjson` (see {@link sendStream}). */
export function sendNdjson(
  request: FastifyRequest,
  reply: FastifyReply,
  items: AsyncIterable<unknown>,
  onAbort?: () => void,
  options: { startAtOnce?: boolean } = {},
): Promise<void> {
  return sendStream(request, reply, items, ndjsonFormat(options), onAbort);
}

export const wantsNdjson = (request: FastifyRequest) => (request.headers.accept ?? "").includes("application/x-ndjson");
