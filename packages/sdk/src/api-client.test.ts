import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ApiClient, backoffDelayMs, MAX_RETRY_AFTER_MS, parseRetryAfter } from "./api-client.js";
import { type FetchFunction, resolveConfig } from "./config.js";
import { NetworkError, RateLimitError, ServerError, TimeoutError, ValidationError } from "./errors.js";

const okSchema = z.object({ ok: z.boolean() });

type Reply = Response | Error | (() => Response | Promise<Response>);

/** A fetch that answers from a script, one reply per call, and records what it was asked. */
function scriptedFetch(replies: Reply[]) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const fetch: FetchFunction = async (input, init) => {
    calls.push({ url: String(input), init });
    const reply = replies[calls.length - 1];
    if (reply === undefined) throw new Error(`unexpected call ${calls.length}`);
    if (reply instanceof Error) throw reply;
    return typeof reply === "function" ? reply() : reply;
  };
  return { fetch, calls };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

const failure = (status: number, code: string) => json(status, { error: { code, message: code } });
const fetchFailed = () => new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED 127.0.0.1:8080") });

function client(fetch: FetchFunction, opts: { maxRetries?: number; timeoutMs?: number } = {}) {
  const delays: number[] = [];
  const api = new ApiClient(resolveConfig({ apiUrl: "http://sandpit.test", apiKey: "sk_test", fetch, ...opts }, {}), {
    sleep: async (ms) => {
      delays.push(ms);
    },
    random: () => 0.5,
  });
  return { api, delays };
}

describe("retry policy", () => {
  it("retries 5xx with exponential backoff, then succeeds", async () => {
    const { fetch, calls } = scriptedFetch([
      failure(503, "runtime_unavailable"),
      failure(500, "internal"),
      json(200, { ok: true }),
    ]);
    const { api, delays } = client(fetch);
    await expect(api.json(okSchema, "/thing")).resolves.toEqual({ ok: true });
    expect(calls).toHaveLength(3);
    expect(delays).toEqual([backoffDelayMs(0, () => 0.5), backoffDelayMs(1, () => 0.5)]);
  });

  it("retries network errors and gives up with a NetworkError after maxRetries", async () => {
    const { fetch, calls } = scriptedFetch([fetchFailed(), fetchFailed(), fetchFailed()]);
    const { api } = client(fetch, { maxRetries: 2 });
    const error = await api.json(okSchema, "/thing").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
    expect(calls).toHaveLength(3);
  });

  it("honours Retry-After on 429", async () => {
    const { fetch, calls } = scriptedFetch([
      json(429, { error: { code: "rate_limited", message: "slow down" } }, { "retry-after": "3" }),
      json(200, { ok: true }),
    ]);
    const { api, delays } = client(fetch);
    await api.json(okSchema, "/thing");
    expect(calls).toHaveLength(2);
    expect(delays).toEqual([3000]);
  });

  it("does not wait for a Retry-After longer than the limit", async () => {
    const retryAfter = String(MAX_RETRY_AFTER_MS / 1000 + 1);
    const { fetch, calls } = scriptedFetch([
      json(429, { error: { code: "rate_limited", message: "slow down" } }, { "retry-after": retryAfter }),
    ]);
    const { api } = client(fetch);
    const error = await api.json(okSchema, "/thing").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ retryAfterMs: (MAX_RETRY_AFTER_MS / 1000 + 1) * 1000 });
    expect(calls).toHaveLength(1);
  });

  it.each([400, 401, 403, 404, 409, 413, 422])("never retries %i", async (status) => {
    const { fetch, calls } = scriptedFetch([failure(status, "bad_request"), json(200, { ok: true })]);
    const { api } = client(fetch);
    await expect(api.json(okSchema, "/thing")).rejects.toMatchObject({ status });
    expect(calls).toHaveLength(1);
  });

  it("surfaces the last error when the retries run out", async () => {
    const { fetch } = scriptedFetch([failure(500, "internal"), failure(502, "internal")]);
    const { api } = client(fetch, { maxRetries: 1 });
    await expect(api.json(okSchema, "/thing")).rejects.toMatchObject({ status: 502 });
    await expect(api.json(okSchema, "/thing")).rejects.toBeInstanceOf(Error);
  });

  it("does not retry when maxRetries is 0", async () => {
    const { fetch, calls } = scriptedFetch([failure(503, "runtime_unavailable")]);
    const { api } = client(fetch, { maxRetries: 0 });
    await expect(api.json(okSchema, "/thing")).rejects.toBeInstanceOf(ServerError);
    expect(calls).toHaveLength(1);
  });

  it("does not retry a request whose body is a stream", async () => {
    const { fetch, calls } = scriptedFetch([failure(503, "runtime_unavailable"), json(200, { ok: true })]);
    const { api } = client(fetch);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array([1, 2, 3]));
        controller.close();
      },
    });
    await expect(api.json(okSchema, "/upload", { method: "PUT", body })).rejects.toBeInstanceOf(ServerError);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.init).toMatchObject({ duplex: "half" });
  });

  it("retries a stream request until it starts, and not after", async () => {
    let pulls = 0;
    const broken = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            if (pulls++ === 0) controller.enqueue(new TextEncoder().encode('{"type":"stdout","data":"a"}\n'));
            else controller.error(new TypeError("terminated"));
          },
        }),
        { status: 200, headers: { "content-type": "application/x-ndjson" } },
      );
    const { fetch, calls } = scriptedFetch([fetchFailed(), broken, json(200, {})]);
    const { api } = client(fetch);
    const { body } = await api.stream("/logs");
    const reader = body.getReader();
    await reader.read();
    await expect(reader.read()).rejects.toThrow("terminated");
    expect(calls).toHaveLength(2);
  });

  it("throws a TimeoutError, without retrying, when the server is too slow", async () => {
    const slow: FetchFunction = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    let calls = 0;
    const { api } = client(
      (input, init) => {
        calls++;
        return slow(input, init);
      },
      { timeoutMs: 20 },
    );
    await expect(api.json(okSchema, "/thing")).rejects.toBeInstanceOf(TimeoutError);
    expect(calls).toBe(1);
  });

  it("sends the key, JSON body and query", async () => {
    const { fetch, calls } = scriptedFetch([json(400, { error: { code: "validation_failed", message: "x" } })]);
    const { api } = client(fetch);
    await expect(
      api.json(okSchema, "/things", { method: "POST", json: { a: 1 }, query: { q: "x y", skip: undefined } }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(calls[0]?.url).toBe("http://sandpit.test/v1/things?q=x+y");
    expect(calls[0]?.init?.headers).toMatchObject({
      authorization: "Bearer sk_test",
      "content-type": "application/json",
    });
    expect(calls[0]?.init?.body).toBe('{"a":1}');
  });
});

describe("backoffDelayMs", () => {
  it("doubles from 250 ms and keeps between half and all of it", () => {
    expect(backoffDelayMs(0, () => 0)).toBe(125);
    expect(backoffDelayMs(0, () => 0.999_999)).toBe(250);
    expect(backoffDelayMs(3, () => 0)).toBe(1000);
    expect(backoffDelayMs(3, () => 0.999_999)).toBe(2000);
  });

  it("caps at 10 s", () => {
    expect(backoffDelayMs(30, () => 0.999_999)).toBe(10_000);
  });
});

describe("parseRetryAfter", () => {
  it("reads delta-seconds and HTTP dates", () => {
    expect(parseRetryAfter("0")).toBe(0);
    expect(parseRetryAfter(" 12 ")).toBe(12_000);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
  });

  it("ignores a missing or malformed header", () => {
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter("-3")).toBeUndefined();
  });
});

describe("idempotency of retried requests", () => {
  const keyOf = (call: { init: RequestInit | undefined }) =>
    (call.init?.headers as Record<string, string> | undefined)?.["idempotency-key"];

  it("sends one generated Idempotency-Key with every attempt of a POST, and a new one per call", async () => {
    const { fetch, calls } = scriptedFetch([
      failure(503, "runtime_unavailable"),
      json(200, { ok: true }),
      json(200, { ok: true }),
    ]);
    const { api } = client(fetch);
    await api.json(okSchema, "/thing", { method: "POST", json: {} });
    await api.json(okSchema, "/thing", { method: "POST", json: {} });
    expect(calls).toHaveLength(3);
    expect(keyOf(calls[0]!)).toMatch(/^[0-9a-f-]{36}$/);
    expect(keyOf(calls[1]!)).toBe(keyOf(calls[0]!));
    expect(keyOf(calls[2]!)).not.toBe(keyOf(calls[0]!));
  });

  it("keeps a caller's Idempotency-Key and sends none on a GET", async () => {
    const { fetch, calls } = scriptedFetch([json(200, { ok: true }), json(200, { ok: true })]);
    const { api } = client(fetch);
    await api.json(okSchema, "/thing", { method: "POST", json: {}, headers: { "Idempotency-Key": "mine" } });
    await api.json(okSchema, "/thing");
    expect(keyOf(calls[0]!)).toBe("mine");
    expect(keyOf(calls[1]!)).toBeUndefined();
  });

  it("does not retry a streamed POST that may have run (the server cannot replay a stream)", async () => {
    const { fetch, calls } = scriptedFetch([failure(503, "runtime_unavailable"), json(200, { ok: true })]);
    const { api } = client(fetch);
    const error = await api
      .stream("/exec", { method: "POST", json: {}, headers: { accept: "application/x-ndjson" } })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ServerError);
    expect(calls).toHaveLength(1);
  });

  it("retries a streamed POST the server turned away (429, connection refused) or that is repeatable", async () => {
    const refused = new TypeError("fetch failed", {
      cause: Object.assign(new Error("refused"), { code: "ECONNREFUSED" }),
    });
    const { fetch, calls } = scriptedFetch([
      failure(429, "rate_limited"),
      refused,
      json(200, { ok: true }),
      failure(503, "runtime_unavailable"),
      json(200, { ok: true }),
    ]);
    const { api } = client(fetch);
    const streamed = { method: "POST", json: {}, headers: { accept: "application/x-ndjson" } } as const;
    await api.stream("/exec", streamed);
    expect(calls).toHaveLength(3);
    await api.stream("/templates/base/build", { ...streamed, repeatable: true });
    expect(calls).toHaveLength(5);
  });
});
