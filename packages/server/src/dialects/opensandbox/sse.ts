import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../../errors.js";
import { nextWithin } from "../../lib/next-within.js";
import { writeOrWait } from "../../lib/write-or-wait.js";

/** execd's keep-alive: a `ping` event whenever a stream has been quiet this long. */
const PING_EVERY_MS = 3000;

function write(res: ServerResponse, event: unknown): Promise<void> {
  return writeOrWait(res, `data: ${JSON.stringify(event)}\n\n`);
}

/**
 * Sends execd events as `text/event-stream` (`data: <json>` frames), with a `ping` event while the
 * stream is quiet. The first event is awaited before the response starts, so errors that happen up front
 * (404, 409) are ordinary JSON errors; a later failure ends the stream with an `error` event.
 * `onAbort` runs when the client goes away before the end.
 */
export async function sendSse(
  request: FastifyRequest,
  reply: FastifyReply,
  events: AsyncIterable<unknown>,
  onAbort?: () => void,
): Promise<void> {
  const iterator = events[Symbol.asyncIterator]();
  const first = await iterator.next();
  reply.hijack();
  const res = reply.raw;
  let finished = false;
  res.on("close", () => {
    if (!finished) onAbort?.();
  });
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    "x-request-id": request.id,
  });
  res.flushHeaders();
  try {
    let next = first;
    while (!next.done && !res.destroyed) {
      await write(res, next.value);
      const pending = iterator.next();
      let arrived = await nextWithin(pending, PING_EVERY_MS);
      while (arrived === undefined && !res.destroyed) {
        await write(res, { type: "ping", text: "pong", timestamp: Date.now() });
        arrived = await nextWithin(pending, PING_EVERY_MS);
      }
      if (arrived === undefined) break;
      next = arrived;
    }
  } catch (e) {
    request.log.warn({ err: e }, "execd stream failed");
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    await write(res, {
      type: "error",
      error: { ename: "RuntimeError", evalue: message, traceback: [message] },
      timestamp: Date.now(),
    });
  } finally {
    finished = true;
    res.end();
    await iterator.return?.();
  }
}
