import { createHmac, timingSafeEqual } from "node:crypto";
import {
  type CreatedWebhook,
  type CreateWebhookRequest,
  createdWebhookSchema,
  type EventType,
  eventSchema,
  listEventsResponseSchema,
  listWebhookDeliveriesResponseSchema,
  listWebhooksResponseSchema,
  type SandpitEvent,
  type Webhook,
  type WebhookDeliveryAttempt,
} from "@sandpit/contract";
import { ApiClient, backoffDelayMs } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";
import { NetworkError, ServerError } from "./errors.js";
import { parseSse } from "./sse.js";

export type { CreatedWebhook, CreateWebhookRequest, EventType, SandpitEvent, Webhook, WebhookDeliveryAttempt };

/** Which events {@link Events.list} returns. */
export interface EventFilter {
  /** Only this sandbox's events. */
  sandboxId?: string;
  /** Only events of these types. */
  type?: EventType | EventType[];
  /** Only events at or after this time. */
  since?: Date | string;
  /** `desc` (default): newest first; `asc`: oldest first. */
  order?: "asc" | "desc";
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** At most this many events (1–1000, default 100). */
  limit?: number;
}

/** Where {@link Events.stream} starts and what it lets through. */
export interface EventStreamOptions {
  sandboxId?: string;
  type?: EventType | EventType[];
  /** Replay events from this time first. */
  since?: Date | string;
  /** Continue after this event id (e.g. the last one a previous stream gave). Default: from now on. */
  after?: number;
  /** Ends the stream. */
  signal?: AbortSignal;
}

const types = (t: EventType | EventType[] | undefined) => (Array.isArray(t) ? t.join(",") : t);
const time = (t: Date | string | undefined) => (t instanceof Date ? t.toISOString() : t);

/**
 * The organisation's sandbox lifecycle events: created, paused, resumed, expired, error (with a reason),
 * destroyed, and snapshot.created.
 *
 * @example
 * ```ts
 * const { events } = await Events.list({ sandboxId: sandbox.id, order: "asc" });
 * console.log(events.map((e) => e.type));
 * ```
 */
export class Events {
  private constructor() {}

  /**
   * A page of events, newest first unless `order: "asc"`; `nextCursor` is there when more follow.
   *
   * @example
   * ```ts
   * let page = await Events.list({ type: "sandbox.error", limit: 50 });
   * while (page.nextCursor) page = await Events.list({ type: "sandbox.error", cursor: page.nextCursor });
   * ```
   */
  static async list(
    filter: EventFilter = {},
    opts?: ConnectionOptions,
  ): Promise<{ events: SandpitEvent[]; nextCursor?: string }> {
    const page = await client(opts).json(listEventsResponseSchema, "/events", {
      query: {
        sandboxId: filter.sandboxId,
        type: types(filter.type),
        since: time(filter.since),
        order: filter.order,
        cursor: filter.cursor,
        limit: filter.limit,
      },
    });
    return page.nextCursor === undefined ? { events: page.events } : page;
  }

  /**
   * Events as they happen (server-sent events). When the connection breaks, it reconnects with the id
   * of the last event it got, so no event is lost or repeated; it gives up after `maxRetries` failed
   * reconnects in a row. Ends when `signal` aborts.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * for await (const event of Events.stream({ sandboxId: sandbox.id, signal: stop.signal })) {
   *   console.log(event.type, event.data);
   *   if (event.type === "sandbox.destroyed") stop.abort();
   * }
   * ```
   */
  static async *stream(
    options: EventStreamOptions = {},
    opts?: ConnectionOptions,
  ): AsyncGenerator<SandpitEvent, void, undefined> {
    const api = client(opts);
    const { signal } = options;
    let lastId = options.after;
    let failures = 0;
    while (!signal?.aborted) {
      try {
        const response = await api.stream("/events/stream", {
          query: { sandboxId: options.sandboxId, type: types(options.type), since: time(options.since) },
          headers: {
            accept: "text/event-stream",
            ...(lastId === undefined ? {} : { "last-event-id": String(lastId) }),
          },
          ...(signal ? { signal } : {}),
        });
        for await (const message of parseSse(response.body, response.requestId)) {
          // The server names its starting position with an id-only message.
          if (message.id !== undefined && /^\d+$/.test(message.id)) lastId = Number(message.id);
          if (message.data === "") continue;
          const parsed = eventSchema.safeParse(JSON.parse(message.data));
          if (!parsed.success) {
            throw new ServerError(`the server sent an event the SDK does not understand: ${parsed.error.message}`, {
              code: "invalid_response",
              requestId: response.requestId,
            });
          }
          failures = 0;
          yield parsed.data;
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (!(err instanceof NetworkError) || failures >= api.config.maxRetries) throw err;
        await new Promise((resolve) => setTimeout(resolve, backoffDelayMs(failures++)));
      }
    }
  }
}

/**
 * Webhooks: the organisation's events POSTed to a URL as JSON, signed with `X-Sandpit-Signature`
 * (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`), retried with exponential backoff.
 *
 * @example
 * ```ts
 * const hook = await Webhooks.create({ url: "https://example.com/hooks/sandpit", events: ["sandbox.error"] });
 * saveSecret(hook.secret); // shown only now
 * ```
 */
export class Webhooks {
  private constructor() {}

  /** Registers a webhook; the returned `secret` (generated unless given) is never shown again. */
  static async create(params: CreateWebhookRequest, opts?: ConnectionOptions): Promise<CreatedWebhook> {
    return client(opts).json(createdWebhookSchema, "/webhooks", { method: "POST", json: params });
  }

  /** The organisation's webhooks, without their secrets. */
  static async list(opts?: ConnectionOptions): Promise<Webhook[]> {
    return (await client(opts).json(listWebhooksResponseSchema, "/webhooks")).webhooks;
  }

  /** Removes a webhook; deliveries still queued for it are dropped. */
  static async delete(id: string, opts?: ConnectionOptions): Promise<void> {
    await client(opts).empty(`/webhooks/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** The webhook's delivery log: every attempt, newest first, with the receiver's status or the error. */
  static async deliveries(
    id: string,
    filter: { limit?: number } = {},
    opts?: ConnectionOptions,
  ): Promise<WebhookDeliveryAttempt[]> {
    const { deliveries } = await client(opts).json(
      listWebhookDeliveriesResponseSchema,
      `/webhooks/${encodeURIComponent(id)}/deliveries`,
      { query: { limit: filter.limit } },
    );
    return deliveries;
  }

  /**
   * Checks a delivery's `X-Sandpit-Signature` against the raw request body and the webhook's secret,
   * and that it was signed at most `toleranceSec` seconds ago (replays of old deliveries fail).
   *
   * @example
   * ```ts
   * if (!Webhooks.verifySignature(rawBody, req.headers["x-sandpit-signature"], secret)) res.writeHead(401).end();
   * ```
   */
  static verifySignature(
    body: string | Uint8Array,
    header: string | undefined,
    secret: string,
    { toleranceSec = 300, now = Date.now() }: { toleranceSec?: number; now?: number } = {},
  ): boolean {
    const fields = new Map(
      (header ?? "").split(",").map((part) => {
        const eq = part.indexOf("=");
        return [part.slice(0, eq).trim(), part.slice(eq + 1).trim()] as const;
      }),
    );
    const t = fields.get("t");
    const v1 = fields.get("v1");
    if (t === undefined || v1 === undefined || !/^\d+$/.test(t) || !/^[0-9a-f]{64}$/.test(v1)) return false;
    if (Math.abs(now / 1000 - Number(t)) > toleranceSec) return false;
    const expected = createHmac("sha256", secret)
      .update(`${t}.`)
      .update(typeof body === "string" ? body : Buffer.from(body))
      .digest();
    return timingSafeEqual(expected, Buffer.from(v1, "hex"));
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
