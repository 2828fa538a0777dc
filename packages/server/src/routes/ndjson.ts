import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { writeOrWait } from "../lib/write-or-wait.js";

/**
 * Sends an async iterable as `application/x-ndjson`. The first item is awaited before the response
 * starts, so errors that happen up front (404, 409) are ordinary JSON errors; later errors end the
 * stream with an `error` line. `onAbort` runs when the client goes away before the end. With
 * `startAtOnce` the response starts before the first item (for streams that may stay quiet for long,
 * whose callers checked up front what could fail).
 */
export async function sendNdjson(
  request: FastifyRequest,
  reply: FastifyReply,
  items: AsyncIterable<unknown>,
  onAbort?: () => void,
  options: { startAtOnce?: boolean } = {},
): Promise<void> {
  const iterator = items[Symbol.asyncIterator]();
  const first = options.startAtOnce ? undefined : await iterator.next();
  reply.hijack();
  const res = reply.raw;
  let finished = false;
  res.on("close", () => {
    if (!finished) onAbort?.();
  });
  res.writeHead(200, {
    "content-type": "application/x-ndjson",
    "cache-control": "no-store",
    "x-request-id": request.id,
  });
  res.flushHeaders();
  try {
    let next = first ?? (await iterator.next());
    while (!next.done) {
      // Lines that come in one burst (a command's exit and the end of the stream) leave in one packet.
      if (!res.writableCorked) {
        res.cork();
        setImmediate(() => res.uncork());
      }
      await writeOrWait(res, `${JSON.stringify(next.value)}\n`);
      if (res.destroyed) break;
      next = await iterator.next();
    }
  } catch (e) {
    const error =
      e instanceof ApiError ? { code: e.code, message: e.message } : { code: "internal", message: String(e) };
    request.log.warn({ err: e }, "stream failed");
    if (!res.destroyed) res.write(`${JSON.stringify({ type: "error", ...error })}\n`);
  } finally {
    finished = true;
    res.end();
    await iterator.return?.();
  }
}

export const wantsNdjson = (request: FastifyRequest) => (request.headers.accept ?? "").includes("application/x-ndjson");
