import { NetworkError, SandpitError } from "./errors.js";

/** One message of a `text/event-stream`: its fields as the server sent them. */
export interface SseMessage {
  /** The `id:` field, when the message had one (it may come without data: a position only). */
  id?: string;
  /** The `event:` field; `message` when absent. */
  event: string;
  /** The `data:` lines joined with newlines; empty for a message without data. */
  data: string;
}

/**
 * Splits a `text/event-stream` body into messages, as the HTML spec's EventSource parses it: lines end
 * with LF, CR or CRLF (also across chunks); `:` lines are comments (heartbeats); a blank line ends a
 * message. Messages with neither id nor data are left out.
 *
 * @example
 * ```ts
 * for await (const message of parseSse(response.body)) console.log(message.id, message.event, message.data);
 * ```
 */
export async function* parseSse(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  requestId?: string,
): AsyncGenerator<SseMessage, void, undefined> {
  const decoder = new TextDecoder("utf-8");
  let buffered = "";
  let message: { id?: string; event?: string; data: string[] } = { data: [] };
  const finish = (): SseMessage | undefined => {
    const done = message;
    message = { data: [] };
    if (done.id === undefined && done.data.length === 0) return undefined;
    return {
      ...(done.id === undefined ? {} : { id: done.id }),
      event: done.event ?? "message",
      data: done.data.join("\n"),
    };
  };
  const take = (line: string) => {
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") message.data.push(value);
    else if (field === "event") message.event = value;
    else if (field === "id" && !value.includes("\0")) message.id = value;
  };
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      for (;;) {
        const end = buffered.search(/\r\n|\r|\n/);
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
        if (end < 0 || (end === buffered.length - 1 && buffered[end] === "\r")) break;
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + (buffered.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          const done = finish();
          if (done) yield done;
        } else take(line);
      }
    }
  } catch (err) {
    if (err instanceof SandpitError) throw err;
    throw new NetworkError(`the event stream broke: ${err instanceof Error ? err.message : String(err)}`, {
      code: "network_error",
      requestId,
      cause: err,
    });
  }
  // A message without its closing blank line is incomplete and is not dispatched (as EventSource does).
}
