import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../../errors.js";
import { type StreamFormat, sendStream } from "../../http/streaming.js";

/** execd's keep-alive: a `ping` event whenever a stream has been quiet this long. */
const PING_EVERY_MS = 3000;

const data = (event: unknown) => `data: ${JSON.stringify(event)}\n\n`;

/** execd's `text/event-stream`: `data: <json>` frames, `ping` events while quiet, errors as its error event. */
const execdSse: StreamFormat = {
  headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" },
  encode: data,
  encodeError: (e) => {
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    return data({
      type: "error",
      error: { ename: "RuntimeError", evalue: message, traceback: [message] },
      timestamp: Date.now(),
    });
  },
  keepAlive: { everyMs: PING_EVERY_MS, chunk: () => data({ type: "ping", text: "pong", timestamp: Date.now() }) },
};

/**
 * Sends execd events as `text/event-stream`, with a `ping` event while the stream is quiet. The first
 * event is awaited before the response starts, so errors that happen up front (404, 409) are ordinary JSON
 * errors; a later failure ends the stream with an `error` event. `onAbort` runs when the client goes away
 * before the end.
 */
export function sendSse(
  request: FastifyRequest,
  reply: FastifyReply,
  events: AsyncIterable<unknown>,
  onAbort?: () => void,
): Promise<void> {
  return sendStream(request, reply, events, execdSse, onAbort);
}
