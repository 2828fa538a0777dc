import { type EgressLogEntry, egressLogEntrySchema, egressLogResponseSchema } from "@sandpit/contract";
import { ApiClient, backoffDelayMs } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";
import { NetworkError } from "./errors.js";
import { parseNdjsonEvents } from "./ndjson.js";

export type { EgressLogEntry };

/** Which outbound connection attempts an egress log returns. */
export interface EgressLogFilter {
  /** Only attempts at or after this time. */
  since?: Date | string;
  /** Only allowed, or only denied, attempts. */
  decision?: "allowed" | "denied";
  /** Only entries with a larger `seq` (the `seq` of the last entry you have). */
  after?: number;
  /** At most this many entries (1–10 000, default 1000). */
  limit?: number;
}

/** Where {@link EgressLog.follow} starts, and what ends it. */
export interface EgressLogFollowOptions extends EgressLogFilter {
  /** Ends the stream. */
  signal?: AbortSignal;
}

function query(filter: EgressLogFilter, extra: Record<string, string | undefined> = {}) {
  const since = filter.since instanceof Date ? filter.since.toISOString() : filter.since;
  return { since, decision: filter.decision, after: filter.after, limit: filter.limit, ...extra };
}

/** One page of an egress log at `path` (the organisation's or a sandbox's). */
export async function listEgressLog(
  client: ApiClient,
  path: string,
  filter: EgressLogFilter,
  extra: Record<string, string | undefined> = {},
): Promise<EgressLogEntry[]> {
  const { entries } = await client.json(egressLogResponseSchema, path, { query: query(filter, extra) });
  return entries;
}

/**
 * Follows an egress log at `path`: entries already there (after `after`, since `since`), then new ones as
 * they happen. A broken connection is reopened after the last entry's `seq`, so none is lost or repeated;
 * it gives up after `maxRetries` failed reconnects in a row.
 */
export async function* followEgressLog(
  client: ApiClient,
  path: string,
  options: EgressLogFollowOptions,
  extra: Record<string, string | undefined> = {},
): AsyncGenerator<EgressLogEntry, void, undefined> {
  const { signal } = options;
  let after = options.after;
  let failures = 0;
  while (!signal?.aborted) {
    try {
      const response = await client.stream(path, {
        query: { ...query({ ...options, after }, extra), follow: "true" },
        headers: { accept: "application/x-ndjson" },
        ...(signal ? { signal } : {}),
      });
      for await (const entry of parseNdjsonEvents(egressLogEntrySchema, response.body, response.requestId)) {
        after = entry.seq;
        failures = 0;
        yield entry;
      }
      return;
    } catch (err) {
      if (signal?.aborted) return;
      if (!(err instanceof NetworkError) || failures >= client.config.maxRetries) throw err;
      await new Promise((resolve) => setTimeout(resolve, backoffDelayMs(failures++)));
    }
  }
}

/**
 * The organisation's egress log: every outbound connection attempt of its sandboxes, with its
 * destination, domain, whether it was allowed or denied and by which rule. A sandbox's own log is
 * `sandbox.egressLog()`.
 *
 * @example
 * ```ts
 * const denied = await EgressLog.list({ decision: "denied" });
 * for (const e of denied) console.log(e.sandboxId, e.domain ?? e.ip, e.rule);
 * ```
 */
export class EgressLog {
  private constructor() {}

  /** Entries oldest first; `sandboxId` narrows it to one sandbox. */
  static async list(
    filter: EgressLogFilter & { sandboxId?: string } = {},
    opts?: ConnectionOptions,
  ): Promise<EgressLogEntry[]> {
    return listEgressLog(client(opts), "/egress-log", filter, { sandboxId: filter.sandboxId });
  }

  /**
   * Entries as they happen, as an async iterator; ends when `signal` aborts.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * for await (const entry of EgressLog.follow({ decision: "denied", signal: stop.signal })) {
   *   console.log(entry.domain, entry.rule);
   * }
   * ```
   */
  static follow(
    options: EgressLogFollowOptions & { sandboxId?: string } = {},
    opts?: ConnectionOptions,
  ): AsyncGenerator<EgressLogEntry, void, undefined> {
    return followEgressLog(client(opts), "/egress-log", options, { sandboxId: options.sandboxId });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
