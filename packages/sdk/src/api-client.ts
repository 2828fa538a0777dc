import type { z } from "zod";
import type { FetchFunction, ResolvedConfig } from "./config.js";
import {
  createError,
  isErrorCode,
  NetworkError,
  SandpitError,
  type SandpitErrorCode,
  ServerError,
  TimeoutError,
} from "./errors.js";

/** How long a `Retry-After` may ask the client to wait before the SDK gives up instead. */
export const MAX_RETRY_AFTER_MS = 60_000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 10_000;

/** HTTP method of an API call. */
export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/** One API call, relative to `{apiUrl}/v1`. */
export interface RequestOptions {
  method?: HttpMethod;
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  /** A value to send as a JSON body. */
  json?: unknown;
  /** A raw body, sent as `application/octet-stream`. A stream body is sent once and never retried. */
  body?: Uint8Array | ReadableStream<Uint8Array>;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Cancels the request. */
  signal?: AbortSignal;
  /**
   * The request may run twice without harm (building a template joins the running build, pulling an
   * image is a no-op the second time), so a streamed POST is retried like a GET.
   */
  repeatable?: boolean;
  /** The path is relative to `{apiUrl}` instead of `{apiUrl}/v1` (the Prometheus `/metrics`). */
  unversioned?: boolean;
}

/** A response whose body the caller reads as it arrives. */
export interface StreamResponse {
  body: ReadableStream<Uint8Array>;
  requestId: string | undefined;
  headers: Headers;
}

/** Hooks for tests: how to wait between attempts and where jitter comes from. */
export interface RetryHooks {
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/**
 * Why an attempt failed, as far as retrying goes: `unsent` — the server turned it away before running it
 * (connection refused, 429), `maybe-ran` — it may have run (a 5xx, a connection that broke off), `final`
 * — retrying cannot help.
 */
type FailureKind = "unsent" | "maybe-ran" | "final";

type Attempt<T> = { ok: true; value: T } | { ok: false; error: SandpitError; kind: FailureKind; delayMs?: number };

/**
 * Backoff before retry number `attempt` (0 for the first retry): exponential from 250 ms, capped at
 * 10 s, with jitter that keeps between half and all of it.
 *
 * @example
 * ```ts
 * backoffDelayMs(2, () => 0.5); // 750
 * ```
 */
export function backoffDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

/**
 * Reads a `Retry-After` header, either delta-seconds or an HTTP date, as milliseconds from `now`.
 * Returns `undefined` when the header is missing or malformed.
 *
 * @example
 * ```ts
 * parseRetryAfter("2"); // 2000
 * ```
 */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  if (!/^[A-Za-z]{3}, /.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * The transport under every SDK call: builds URLs, adds the API key, enforces the client-side timeout,
 * retries network errors, 429 and 5xx with exponential backoff (honouring `Retry-After`), turns error
 * bodies into typed errors and validates responses against the contract's schemas.
 *
 * A POST carries an `Idempotency-Key` generated once per call and sent again with each of its retries:
 * the server answers a retry of a request it already ran with the stored response instead of running it
 * twice. The server cannot replay a streamed answer (`Accept: application/x-ndjson`), so a streamed POST
 * that may have run (5xx, broken connection) is not retried unless it is `repeatable`.
 *
 * @example
 * ```ts
 * const client = new ApiClient(resolveConfig());
 * const { sandboxes } = await client.json(listSandboxesResponseSchema, "/sandboxes");
 * ```
 */
export class ApiClient {
  readonly config: ResolvedConfig;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;

  constructor(config: ResolvedConfig, hooks: RetryHooks = {}) {
    this.config = config;
    this.#sleep = hooks.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#random = hooks.random ?? Math.random;
  }

  /** Sends a request and validates its JSON response with `schema`. */
  async json<T>(schema: z.ZodType<T>, path: string, opts: RequestOptions = {}): Promise<T> {
    return this.#send(path, opts, false, async (response, requestId) => {
      const text = await response.text();
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        throw invalidResponse(`the response is not JSON: ${text.slice(0, 200)}`, response.status, requestId);
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        throw invalidResponse(
          `the response does not match the API contract: ${parsed.error.message}`,
          response.status,
          requestId,
        );
      }
      return parsed.data;
    });
  }

  /** Sends a request whose response has no body worth reading (204, 201 without content). */
  async empty(path: string, opts: RequestOptions = {}): Promise<void> {
    await this.#send(path, opts, false, async (response) => {
      await response.arrayBuffer();
    });
  }

  /** Sends a request and returns the whole response body as bytes. */
  async bytes(path: string, opts: RequestOptions = {}): Promise<Uint8Array> {
    return this.#send(path, opts, false, async (response) => new Uint8Array(await response.arrayBuffer()));
  }

  /**
   * Sends a request and returns the response body as a stream. Retries happen only until a successful
   * response starts; once data flows, a broken connection surfaces to the reader.
   */
  async stream(path: string, opts: RequestOptions = {}): Promise<StreamResponse> {
    return this.#send(path, opts, true, async (response, requestId) => {
      if (response.body === null) throw invalidResponse("the response has no body", response.status, requestId);
      return { body: response.body as ReadableStream<Uint8Array>, requestId, headers: response.headers };
    });
  }

  async #send<T>(
    path: string,
    opts: RequestOptions,
    streaming: boolean,
    read: (response: Response, requestId: string | undefined) => Promise<T>,
  ): Promise<T> {
    const url = this.#url(path, opts);
    const retryable = !(opts.body instanceof ReadableStream);
    const once = withIdempotencyKey(opts);
    const replaySafe = replaySafeRequest(once);
    for (let attempt = 0; ; attempt++) {
      const result = await this.#attempt(url, once, streaming, read);
      if (result.ok) return result.value;
      const worthRetrying = result.kind === "unsent" || (result.kind === "maybe-ran" && replaySafe);
      if (!retryable || !worthRetrying || attempt >= this.config.maxRetries) throw result.error;
      await this.#sleep(result.delayMs ?? backoffDelayMs(attempt, this.#random));
      if (opts.signal?.aborted) throw opts.signal.reason;
    }
  }

  async #attempt<T>(
    url: string,
    opts: RequestOptions,
    streaming: boolean,
    read: (response: Response, requestId: string | undefined) => Promise<T>,
  ): Promise<Attempt<T>> {
    const timeout = new AbortController();
    let timedOut = false;
    const timer =
      this.config.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            timeout.abort(new Error("client-side timeout"));
          }, this.config.timeoutMs)
        : undefined;
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout.signal]) : timeout.signal;
    const fetchFn: FetchFunction = this.config.fetch;
    const describeTimeout = () =>
      new TimeoutError(`the request did not finish within ${this.config.timeoutMs} ms (${url})`, {
        code: "request_timeout",
      });
    let requestId: string | undefined;
    try {
      let response: Response;
      try {
        response = await fetchFn(url, this.#init(opts, signal));
      } catch (err) {
        if (timedOut) return { ok: false, error: describeTimeout(), kind: "final" };
        if (opts.signal?.aborted) throw opts.signal.reason;
        return {
          ok: false,
          error: networkError(`cannot reach ${this.config.apiUrl}`, err),
          kind: connectionRefused(err) ? "unsent" : "maybe-ran",
        };
      }
      requestId = response.headers.get("x-request-id") ?? undefined;
      if (!response.ok) {
        const error = await this.#errorFrom(response, requestId);
        const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
        if (response.status === 429 || response.status >= 500) {
          if (retryAfterMs !== undefined && retryAfterMs > MAX_RETRY_AFTER_MS) {
            return { ok: false, error, kind: "final" };
          }
          return {
            ok: false,
            error,
            kind: response.status === 429 ? "unsent" : "maybe-ran",
            ...(retryAfterMs === undefined ? {} : { delayMs: retryAfterMs }),
          };
        }
        return { ok: false, error, kind: "final" };
      }
      if (streaming) clearTimeout(timer);
      try {
        return { ok: true, value: await read(response, requestId) };
      } catch (err) {
        if (timedOut) return { ok: false, error: describeTimeout(), kind: "final" };
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (err instanceof SandpitError) throw err;
        return { ok: false, error: networkError("the response broke off", err, requestId), kind: "maybe-ran" };
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #url(path: string, opts: RequestOptions): string {
    const url = new URL(`${this.config.apiUrl}${opts.unversioned ? "" : "/v1"}${path}`);
    for (const [key, value] of Object.entries(opts.query ?? {})) {
      if (value !== undefined) url.searchParams.append(key, String(value));
    }
    return url.toString();
  }

  #init(opts: RequestOptions, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.config.apiKey !== undefined) headers.authorization = `Bearer ${this.config.apiKey}`;
    let body: RequestInit["body"];
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      headers["content-type"] = "application/octet-stream";
      body = opts.body;
    }
    for (const [key, value] of Object.entries(opts.headers ?? {})) headers[key.toLowerCase()] = value;
    const init: RequestInit & { duplex?: "half" } = { method: opts.method ?? "GET", headers, body, signal };
    if (opts.body instanceof ReadableStream) init.duplex = "half";
    return init;
  }

  async #errorFrom(response: Response, requestId: string | undefined): Promise<SandpitError> {
    const text = await response.text().catch(() => "");
    let code: SandpitErrorCode = fallbackCode(response.status);
    let message = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
    let details: Record<string, unknown> | undefined;
    try {
      const body: unknown = JSON.parse(text);
      const error = typeof body === "object" && body !== null ? (body as { error?: unknown }).error : undefined;
      if (typeof error === "object" && error !== null) {
        const fields = error as { code?: unknown; message?: unknown; details?: unknown };
        if (isErrorCode(fields.code)) code = fields.code;
        if (typeof fields.message === "string" && fields.message !== "") message = fields.message;
        if (typeof fields.details === "object" && fields.details !== null) {
          details = fields.details as Record<string, unknown>;
        }
      }
    } catch {
      if (text.trim() !== "" && text.length < 300) message = `${message}: ${text.trim()}`;
    }
    if (response.status === 401 && this.config.apiKey === undefined) {
      message = `${message} (no API key configured: set SANDPIT_API_KEY or pass apiKey)`;
    }
    return createError(message, {
      code,
      status: response.status,
      requestId,
      details,
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    });
  }
}

/** The request with an `Idempotency-Key` when it is a POST that has none: one key for all its attempts. */
function withIdempotencyKey(opts: RequestOptions): RequestOptions {
  if ((opts.method ?? "GET") !== "POST") return opts;
  if (Object.keys(opts.headers ?? {}).some((name) => name.toLowerCase() === "idempotency-key")) return opts;
  return { ...opts, headers: { ...opts.headers, "idempotency-key": crypto.randomUUID() } };
}

/**
 * Whether sending the request again cannot do anything twice: every method but POST is idempotent
 * (PATCH merges the same keys again), and the server replays a keyed POST's stored response unless the
 * answer is streamed.
 */
function replaySafeRequest(opts: RequestOptions): boolean {
  if (opts.repeatable === true || (opts.method ?? "GET") !== "POST") return true;
  const accept = Object.entries(opts.headers ?? {}).find(([name]) => name.toLowerCase() === "accept")?.[1] ?? "";
  return !accept.includes("application/x-ndjson");
}

/** The connection was refused: the request never reached a server. */
function connectionRefused(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return typeof cause === "object" && cause !== null && (cause as { code?: unknown }).code === "ECONNREFUSED";
}

function fallbackCode(status: number): SandpitErrorCode {
  const byStatus: Record<number, SandpitErrorCode> = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal",
    501: "not_implemented",
    503: "runtime_unavailable",
    504: "timeout",
    507: "insufficient_storage",
  };
  return byStatus[status] ?? (status >= 500 ? "internal" : "http_error");
}

function invalidResponse(message: string, status: number, requestId: string | undefined): ServerError {
  return new ServerError(message, { code: "invalid_response", status, requestId });
}

function networkError(prefix: string, err: unknown, requestId?: string): NetworkError {
  const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return new NetworkError(`${prefix}: ${reason}`, { code: "network_error", requestId, cause: err });
}
