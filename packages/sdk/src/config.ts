/** The API URL used when neither `apiUrl` nor `SANDPIT_URL` is set. */
export const DEFAULT_API_URL = "http://127.0.0.1:8080";
/** Client-side limit for one API request, in milliseconds, unless `timeoutMs` says otherwise. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** Retries after the first attempt, unless `maxRetries` says otherwise. */
export const DEFAULT_MAX_RETRIES = 3;

/** The `fetch` function the SDK calls; `globalThis.fetch` unless one is injected. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * How the SDK reaches a Sandpit server. Every field is optional and falls back to an
 * environment variable or a default.
 *
 * @example
 * ```ts
 * const sandbox = await Sandbox.create({ template: "base" }, { apiUrl: "http://10.0.0.5:8080", apiKey: "sk_..." });
 * ```
 */
export interface ConnectionOptions {
  /**
   * Base URL of the Sandpit API, without `/v1`.
   *
   * @default SANDPIT_URL // environment variable, or http://127.0.0.1:8080
   */
  apiUrl?: string;
  /**
   * API key sent as `Authorization: Bearer <key>`.
   *
   * @default SANDPIT_API_KEY // environment variable
   */
  apiKey?: string;
  /** `fetch` implementation to use, e.g. one with a proxy agent, or a fake in tests. @default globalThis.fetch */
  fetch?: FetchFunction;
  /**
   * Client-side limit for one API request in **milliseconds**: for JSON responses the whole exchange,
   * for streamed responses (command output, file downloads, template builds) until the response starts.
   * `0` disables it.
   *
   * @default 60_000
   */
  timeoutMs?: number;
  /**
   * How many times a request is retried after a network error, a 429 or a 5xx (never after another 4xx).
   *
   * @default 3
   */
  maxRetries?: number;
}

/** {@link ConnectionOptions} with every fallback applied. */
export interface ResolvedConfig {
  apiUrl: string;
  apiKey: string | undefined;
  fetch: FetchFunction;
  timeoutMs: number;
  maxRetries: number;
}

/**
 * Applies environment fallbacks and defaults to connection options.
 *
 * @example
 * ```ts
 * resolveConfig({}, { SANDPIT_URL: "http://sandpit:8080" }).apiUrl; // "http://sandpit:8080"
 * ```
 */
export function resolveConfig(
  opts: ConnectionOptions = {},
  env: Record<string, string | undefined> = process.env,
): ResolvedConfig {
  const apiUrl = nonEmpty(opts.apiUrl) ?? nonEmpty(env.SANDPIT_URL) ?? DEFAULT_API_URL;
  return {
    apiUrl: apiUrl.replace(/\/+$/, ""),
    apiKey: nonEmpty(opts.apiKey) ?? nonEmpty(env.SANDPIT_API_KEY),
    fetch: opts.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    timeoutMs: nonNegative("timeoutMs", opts.timeoutMs) ?? DEFAULT_REQUEST_TIMEOUT_MS,
    maxRetries: nonNegative("maxRetries", opts.maxRetries) ?? DEFAULT_MAX_RETRIES,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function nonNegative(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number`);
  return value;
}
