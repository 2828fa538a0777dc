import type { z } from "zod";
import { NetworkError, SandpitError, ServerError } from "./errors.js";

/**
 * Splits a byte stream of newline-delimited JSON into parsed values, one per non-blank line.
 * Lines may be split anywhere across chunks, including inside a multi-byte character; a last
 * line without a trailing newline still counts.
 *
 * @example
 * ```ts
 * for await (const value of parseNdjson(response.body)) console.log(value);
 * ```
 */
export async function* parseNdjson(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  requestId?: string,
): AsyncGenerator<unknown, void, undefined> {
  const decoder = new TextDecoder("utf-8");
  let buffered = "";
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim() !== "") yield parseLine(line, requestId);
        newline = buffered.indexOf("\n");
      }
    }
  } catch (err) {
    if (err instanceof SandpitError) throw err;
    throw new NetworkError(`the response stream broke: ${describe(err)}`, {
      code: "network_error",
      requestId,
      cause: err,
    });
  }
  buffered += decoder.decode();
  if (buffered.trim() !== "") yield parseLine(buffered, requestId);
}

/**
 * Like {@link parseNdjson}, and checks every line against a schema of the contract.
 *
 * @example
 * ```ts
 * for await (const event of parseNdjsonEvents(execStreamEventSchema, response.body)) console.log(event.type);
 * ```
 */
export async function* parseNdjsonEvents<T>(
  schema: z.ZodType<T>,
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  requestId?: string,
): AsyncGenerator<T, void, undefined> {
  for await (const value of parseNdjson(body, requestId)) {
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      throw new ServerError(`the server sent a stream event the SDK does not understand: ${parsed.error.message}`, {
        code: "invalid_response",
        requestId,
      });
    }
    yield parsed.data;
  }
}

function parseLine(line: string, requestId: string | undefined): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new ServerError(`the server sent a stream line that is not JSON: ${line.slice(0, 200)}`, {
      code: "invalid_response",
      requestId,
    });
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return `${err.message}${cause}`;
  }
  return String(err);
}
