import { createHmac } from "node:crypto";
import type { EventType } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { ClaimedDelivery, DeliveryAttemptRecord, OrgRecord, WebhookRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { now } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import { OutboundBlockedError, type OutboundGuard } from "../outbound/outbound-guard.js";
import type { Store } from "../store/store.js";
import { toEvent } from "./event-service.js";

export interface WebhookOptions {
  /** Wait before the second attempt; each further wait doubles. */
  retryBaseMs: number;
  /** Attempts per event, the first included. */
  maxAttempts: number;
  /** Limit of one attempt, connection to response. */
  timeoutMs: number;
}

/** Deliveries sent at the same time, over all webhooks. */
const CONCURRENCY = 8;
/** A claimed delivery is leased for its timeout plus this; after a crash it is sent again. */
const LEASE_MARGIN_MS = 5_000;
/** The queue is looked at at least this often (deliveries queued by another process). */
const MAX_IDLE_MS = 30_000;
/** A receiver's response body is read up to this much, then the connection is dropped. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** `X-Sandpit-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`. */
export function webhookSignature(secret: string, timestamp: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return `t=${timestamp},v1=${mac}`;
}

/** Wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed. */
export function retryDelayMs(attempt: number, baseMs: number): number {
  return baseMs * 2 ** (attempt - 1);
}

/**
 * Webhooks of organisations and their delivery. Events queue their deliveries in the same transaction
 * that records them (see the store), so the queue survives restarts; this service sends what is due:
 * signed POSTs through the outbound guard, retried with exponential backoff, each attempt logged.
 */
export class WebhookService {
  private readonly inFlight = new Map<string, AbortController>();
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private again = false;
  private closed = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly guard: OutboundGuard,
    private readonly log: FastifyBaseLogger,
    private readonly opts: WebhookOptions,
  ) {}

  async create(
    org: OrgRecord,
    params: { url: string; secret?: string | undefined; events?: EventType[] | undefined },
  ): Promise<WebhookRecord> {
    try {
      await this.guard.resolve(new URL(params.url));
    } catch (e) {
      const message = e instanceof OutboundBlockedError ? e.message : `cannot be resolved (${errorText(e)})`;
      throw new ApiError("validation_failed", `Invalid request: url: ${message}`, {
        fields: [{ field: "url", rule: "reachable_public_host", message }],
      });
    }
    const record: WebhookRecord = {
      id: `whk_${randomBase32(20)}`,
      orgId: org.id,
      url: params.url,
      secret: params.secret ?? `whsec_${randomBase32(40)}`,
      events: [...new Set(params.events ?? [])],
      createdAt: now(),
    };
    await this.store.insertWebhook(record);
    this.log.info({ webhookId: record.id, orgId: org.id }, "webhook created");
    return record;
  }

  /** The caller's webhook, or 404 — also when it belongs to another organisation. */
  async get(org: OrgRecord, id: string): Promise<WebhookRecord> {
    const record = await this.store.getWebhook(id);
    if (!record || record.orgId !== org.id) throw new ApiError("not_found", `webhook ${id} not found`);
    return record;
  }

  list(org: OrgRecord): Promise<WebhookRecord[]> {
    return this.store.listWebhooks(org.id);
  }

  /** Removes the webhook; its queued deliveries are dropped and its delivery log with it. */
  async delete(org: OrgRecord, id: string): Promise<void> {
    await this.get(org, id);
    await this.store.deleteWebhook(id);
  }

  async deliveries(org: OrgRecord, id: string, limit: number): Promise<DeliveryAttemptRecord[]> {
    await this.get(org, id);
    return this.store.listDeliveryAttempts(id, limit);
  }

  /** Starts sending: what was queued before (also before a restart) and every new event. */
  start() {
    this.unsubscribe = this.store.onEvents(() => this.kick());
    this.kick();
  }

  private kick() {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    void this.pump();
  }

  /** Claims due deliveries into the free slots, then sleeps until the next one is due. */
  private async pump() {
    this.pumping = true;
    try {
      do {
        this.again = false;
        const free = CONCURRENCY - this.inFlight.size;
        if (free <= 0) return; // a finishing attempt kicks again
        const t = now();
        const claimed = await this.store.claimDueDeliveries(t, t + this.opts.timeoutMs + LEASE_MARGIN_MS, free);
        for (const c of claimed) this.launch(c);
      } while (this.again && !this.closed);
      if (this.inFlight.size < CONCURRENCY) await this.sleepUntilDue();
    } catch (e) {
      this.log.error({ err: e }, "webhook dispatch failed");
      this.sleep(1000);
    } finally {
      this.pumping = false;
    }
  }

  private async sleepUntilDue() {
    const due = await this.store.nextDeliveryDue();
    this.sleep(due === undefined ? MAX_IDLE_MS : Math.min(MAX_IDLE_MS, Math.max(50, due - now())));
  }

  private sleep(ms: number) {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), ms);
    this.timer.unref();
  }

  private launch(claimed: ClaimedDelivery) {
    const abort = new AbortController();
    this.inFlight.set(claimed.delivery.id, abort);
    this.attempt(claimed, abort.signal)
      .catch((e) => this.log.error({ err: e, deliveryId: claimed.delivery.id }, "webhook attempt failed"))
      .finally(() => {
        this.inFlight.delete(claimed.delivery.id);
        this.kick();
      });
  }

  private async attempt({ delivery, webhook, event }: ClaimedDelivery, signal: AbortSignal) {
    const attempt = delivery.attempts + 1;
    const body = JSON.stringify(toEvent(event));
    const started = now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      statusCode = await this.post(new URL(webhook.url), body, signal, {
        "x-sandpit-event": event.type,
        "x-sandpit-delivery": delivery.id,
        "x-sandpit-signature": webhookSignature(webhook.secret, Math.floor(Date.now() / 1000), body),
      });
      if (statusCode < 200 || statusCode > 299) error = `HTTP ${statusCode}`;
    } catch (e) {
      error = errorText(e);
    }
    // Stopped by a shutdown: not an attempt; the lease runs out and the next start sends it again.
    if (signal.aborted) return;
    const state = error === null ? "delivered" : attempt >= this.opts.maxAttempts ? "failed" : "retrying";
    const finished = now();
    const record: DeliveryAttemptRecord = {
      deliveryId: delivery.id,
      eventId: event.id,
      eventType: event.type,
      attempt,
      at: started,
      statusCode,
      error,
      durationMs: finished - started,
      state,
      nextAttemptAt: state === "retrying" ? finished + retryDelayMs(attempt, this.opts.retryBaseMs) : null,
    };
    await this.store.recordDeliveryAttempt(record);
    const level = state === "delivered" ? "info" : "warn";
    this.log[level](
      { webhookId: webhook.id, deliveryId: delivery.id, eventId: event.id, attempt, statusCode, error, state },
      "webhook delivery",
    );
  }

  /**
   * POSTs the body and resolves with the response status, through the outbound guard (connected to the
   * checked address; redirects are not followed). The receiver's body is read up to a limit.
   */
  private async post(url: URL, body: string, signal: AbortSignal, headers: Record<string, string>): Promise<number> {
    const deadline = AbortSignal.timeout(this.opts.timeoutMs);
    const { response } = await this.guard
      .request(url, {
        method: "POST",
        body,
        signal: AbortSignal.any([signal, deadline]),
        idleTimeoutMs: this.opts.timeoutMs,
        headers: { ...headers, "content-type": "application/json", "user-agent": "Sandpit-Webhooks/1" },
      })
      .catch((e: unknown) => {
        throw deadline.aborted ? new Error(`no response within ${this.opts.timeoutMs} ms`) : e;
      });
    const status = response.statusCode ?? 0;
    // A status that arrived counts even when the rest of the response does not.
    await new Promise<void>((resolve) => {
      let received = 0;
      response.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_RESPONSE_BYTES) response.destroy();
      });
      response.on("close", resolve);
      response.on("error", () => resolve());
    });
    return status;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    for (const abort of this.inFlight.values()) abort.abort();
  }
}

function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as NodeJS.ErrnoException).code;
  return code && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
}
