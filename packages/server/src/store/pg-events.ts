import type pg from "pg";
import type {
  ClaimedDelivery,
  DeliveryAttemptRecord,
  EventFilter,
  EventRecord,
  WebhookRecord,
} from "../domain/index.js";
import type { EventDraft } from "../domain/lifecycle-events.js";
import { randomBase32 } from "../lib/ids.js";
import { EventListeners } from "./event-listeners.js";
import { ADVISORY_LOCKS, all, first, inTransaction, lockUntilCommit, type Queryable, run } from "./pg-sql.js";
import {
  type AttemptRow,
  attemptFromRow,
  attemptInsertSql,
  attemptInsertValues,
  attemptsSql,
  type DeliveryRow,
  deliveryAfterAttemptSql,
  deliveryAfterAttemptValues,
  deliveryEnqueueSql,
  deliveryFromRow,
  type EventRow,
  eventFromRow,
  eventInsertSql,
  eventInsertValues,
  eventListWhere,
  type WebhookRow,
  webhookFromRow,
  webhookInsertSql,
  webhookInsertValues,
  webhookWants,
} from "./sql-rows.js";

/** The schema of events, webhooks and their delivery queue (part of the PostgreSQL store's first version). */
export const pgEventsSchema = `
  CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id TEXT NOT NULL, sandbox_id TEXT NOT NULL,
    type TEXT NOT NULL, at BIGINT NOT NULL, data_json JSONB NOT NULL);
  CREATE INDEX events_org ON events (org_id, id);
  CREATE INDEX events_sandbox ON events (sandbox_id, id);
  CREATE INDEX events_at ON events (at);
  CREATE TABLE webhooks (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), url TEXT NOT NULL, secret TEXT NOT NULL,
    events_json JSONB NOT NULL, created_at BIGINT NOT NULL);
  CREATE INDEX webhooks_org ON webhooks (org_id);
  CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at BIGINT);
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
  CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id);
  CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
  CREATE TABLE webhook_attempts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE, webhook_id TEXT NOT NULL,
    attempt INTEGER NOT NULL, at BIGINT NOT NULL, status_code INTEGER, error TEXT, duration_ms BIGINT NOT NULL,
    state TEXT NOT NULL, next_attempt_at BIGINT);
  CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, seq);
  CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);`;

/**
 * Events, webhooks and the webhook delivery queue in the PostgreSQL store's database. `record` runs in
 * the caller's transaction, so an event and its deliveries commit together with the change they describe.
 */
export class PgEvents extends EventListeners {
  constructor(private readonly pool: pg.Pool) {
    super();
  }

  /** Inserts the events and queues a delivery for every webhook of their organisation that wants them. */
  async record(tx: pg.PoolClient, drafts: EventDraft[]): Promise<EventRecord[]> {
    if (drafts.length === 0) return [];
    // Ids are the cursor of lists and streams: a reader that saw id 11 must not miss a 10 committed
    // after it, so writers of events take turns from their first event to their commit.
    await lockUntilCommit(tx, ADVISORY_LOCKS.events);
    const recorded: EventRecord[] = [];
    for (const d of drafts) {
      const { id } = (await first<{ id: number }>(tx, `${eventInsertSql} RETURNING id`, eventInsertValues(d)))!;
      for (const hook of await this.webhooksOf(d.orgId, tx)) {
        if (webhookWants(hook, d.type))
          await run(tx, deliveryEnqueueSql, [`whd_${randomBase32(20)}`, hook.id, id, d.at]);
      }
      recorded.push({ id, ...d });
    }
    return recorded;
  }

  async list(orgId: string, f: EventFilter): Promise<EventRecord[]> {
    const where = eventListWhere(orgId, f);
    const rows = await all<EventRow>(
      this.pool,
      `SELECT * FROM events WHERE ${where.sql} ORDER BY id ${f.order === "desc" ? "DESC" : "ASC"} LIMIT ?`,
      [...where.values, f.limit],
    );
    return rows.map(eventFromRow);
  }

  async latestId(orgId: string): Promise<number> {
    const row = await first<{ id: number | null }>(this.pool, "SELECT max(id) AS id FROM events WHERE org_id = ?", [
      orgId,
    ]);
    return row?.id ?? 0;
  }

  async purge(before: number): Promise<void> {
    await run(this.pool, "DELETE FROM events WHERE at < ?", [before]);
  }

  async insertWebhook(w: WebhookRecord): Promise<void> {
    await run(this.pool, webhookInsertSql, webhookInsertValues(w));
  }

  async getWebhook(id: string): Promise<WebhookRecord | undefined> {
    const row = await first<WebhookRow>(this.pool, "SELECT * FROM webhooks WHERE id = ?", [id]);
    return row && webhookFromRow(row);
  }

  async webhooksOf(orgId: string, db: Queryable = this.pool): Promise<WebhookRecord[]> {
    const rows = await all<WebhookRow>(db, "SELECT * FROM webhooks WHERE org_id = ? ORDER BY created_at, id", [orgId]);
    return rows.map(webhookFromRow);
  }

  async deleteWebhook(id: string): Promise<void> {
    await run(this.pool, "DELETE FROM webhooks WHERE id = ?", [id]);
  }

  /** Leases due deliveries; rows another server is leasing at this moment are skipped, not waited for. */
  async claimDue(now: number, leaseUntil: number, limit: number): Promise<ClaimedDelivery[]> {
    const rows = await all<{ delivery: DeliveryRow; webhook: WebhookRow; event: EventRow }>(
      this.pool,
      `WITH due AS (
         SELECT * FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?
         ORDER BY next_attempt_at, event_id LIMIT ? FOR UPDATE SKIP LOCKED),
       leased AS (UPDATE webhook_deliveries d SET next_attempt_at = ? FROM due WHERE d.id = due.id)
       SELECT to_jsonb(due) AS delivery, to_jsonb(w) AS webhook, to_jsonb(e) AS event
       FROM due JOIN webhooks w ON w.id = due.webhook_id JOIN events e ON e.id = due.event_id
       ORDER BY due.next_attempt_at, due.event_id`,
      [now, limit, leaseUntil],
    );
    return rows.map((r) => ({
      delivery: deliveryFromRow(r.delivery),
      webhook: webhookFromRow(r.webhook),
      event: eventFromRow(r.event),
    }));
  }

  async nextDue(): Promise<number | undefined> {
    const row = await first<{ at: number | null }>(
      this.pool,
      "SELECT min(next_attempt_at) AS at FROM webhook_deliveries WHERE state = 'pending'",
    );
    return row?.at ?? undefined;
  }

  async recordAttempt(a: DeliveryAttemptRecord): Promise<void> {
    await inTransaction(this.pool, async (tx) => {
      const delivery = await first<{ webhook_id: string }>(
        tx,
        "SELECT webhook_id FROM webhook_deliveries WHERE id = ? FOR UPDATE",
        [a.deliveryId],
      );
      // The webhook was deleted while the attempt was under way: nothing is left to log it in.
      if (!delivery) return;
      await run(tx, attemptInsertSql, attemptInsertValues(a, delivery.webhook_id));
      await run(tx, deliveryAfterAttemptSql, deliveryAfterAttemptValues(a));
    });
  }

  async listAttempts(webhookId: string, limit: number): Promise<DeliveryAttemptRecord[]> {
    return (await all<AttemptRow>(this.pool, attemptsSql, [webhookId, limit])).map(attemptFromRow);
  }
}
