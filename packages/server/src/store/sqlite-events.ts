import type Database from "better-sqlite3";
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

/** The schema of events, webhooks and their delivery queue (one migration of the SQLite store). */
export const eventsMigration = `
  CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, org_id TEXT NOT NULL, sandbox_id TEXT NOT NULL, type TEXT NOT NULL,
    at INTEGER NOT NULL, data_json TEXT NOT NULL);
  CREATE INDEX events_org ON events (org_id, id);
  CREATE INDEX events_sandbox ON events (sandbox_id, id);
  CREATE INDEX events_at ON events (at);
  CREATE TABLE webhooks (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), url TEXT NOT NULL, secret TEXT NOT NULL,
    events_json TEXT NOT NULL, created_at INTEGER NOT NULL);
  CREATE INDEX webhooks_org ON webhooks (org_id);
  CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at INTEGER);
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
  CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id);
  CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
  CREATE TABLE webhook_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE, webhook_id TEXT NOT NULL,
    attempt INTEGER NOT NULL, at INTEGER NOT NULL, status_code INTEGER, error TEXT, duration_ms INTEGER NOT NULL,
    state TEXT NOT NULL, next_attempt_at INTEGER);
  CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, seq);
  CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);`;

/**
 * Events, webhooks and the webhook delivery queue in the SQLite store's database. `record` runs inside
 * the caller's transaction, so an event and its deliveries commit together with the change they describe.
 */
export class SqliteEvents extends EventListeners {
  constructor(private readonly db: Database.Database) {
    super();
  }

  /** Inserts the events and queues a delivery for every webhook of their organisation that wants them. */
  record(drafts: EventDraft[]): EventRecord[] {
    if (drafts.length === 0) return [];
    const insert = this.db.prepare(eventInsertSql);
    const enqueue = this.db.prepare(deliveryEnqueueSql);
    return drafts.map((d) => {
      const id = Number(insert.run(...eventInsertValues(d)).lastInsertRowid);
      for (const hook of this.webhooksOf(d.orgId)) {
        if (webhookWants(hook, d.type)) enqueue.run(`whd_${randomBase32(20)}`, hook.id, id, d.at);
      }
      return { id, ...d };
    });
  }

  list(orgId: string, f: EventFilter): EventRecord[] {
    const where = eventListWhere(orgId, f);
    const rows = this.db
      .prepare(`SELECT * FROM events WHERE ${where.sql} ORDER BY id ${f.order === "desc" ? "DESC" : "ASC"} LIMIT ?`)
      .all(...where.values, f.limit) as EventRow[];
    return rows.map(eventFromRow);
  }

  latestId(orgId: string): number {
    const row = this.db.prepare("SELECT max(id) AS id FROM events WHERE org_id = ?").get(orgId) as {
      id: number | null;
    };
    return row.id ?? 0;
  }

  purge(before: number) {
    this.db.prepare("DELETE FROM events WHERE at < ?").run(before);
  }

  insertWebhook(w: WebhookRecord) {
    this.db.prepare(webhookInsertSql).run(...webhookInsertValues(w));
  }

  getWebhook(id: string): WebhookRecord | undefined {
    const row = this.db.prepare("SELECT * FROM webhooks WHERE id = ?").get(id) as WebhookRow | undefined;
    return row && webhookFromRow(row);
  }

  webhooksOf(orgId: string): WebhookRecord[] {
    const rows = this.db
      .prepare("SELECT * FROM webhooks WHERE org_id = ? ORDER BY created_at, id")
      .all(orgId) as WebhookRow[];
    return rows.map(webhookFromRow);
  }

  deleteWebhook(id: string) {
    this.db.prepare("DELETE FROM webhooks WHERE id = ?").run(id);
  }

  claimDue(now: number, leaseUntil: number, limit: number): ClaimedDelivery[] {
    return this.db.transaction(() => {
      const rows = this.db
        .prepare(
          `SELECT * FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?
           ORDER BY next_attempt_at, event_id LIMIT ?`,
        )
        .all(now, limit) as DeliveryRow[];
      const lease = this.db.prepare("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?");
      const event = this.db.prepare("SELECT * FROM events WHERE id = ?");
      return rows.map((r) => {
        lease.run(leaseUntil, r.id);
        return {
          delivery: deliveryFromRow(r),
          webhook: this.getWebhook(r.webhook_id)!,
          event: eventFromRow(event.get(r.event_id) as EventRow),
        };
      });
    })();
  }

  nextDue(): number | undefined {
    const row = this.db
      .prepare("SELECT min(next_attempt_at) AS at FROM webhook_deliveries WHERE state = 'pending'")
      .get() as { at: number | null };
    return row.at ?? undefined;
  }

  recordAttempt(a: DeliveryAttemptRecord) {
    this.db.transaction(() => {
      const delivery = this.db.prepare("SELECT webhook_id FROM webhook_deliveries WHERE id = ?").get(a.deliveryId) as
        | { webhook_id: string }
        | undefined;
      // The webhook was deleted while the attempt was under way: nothing is left to log it in.
      if (!delivery) return;
      this.db.prepare(attemptInsertSql).run(...attemptInsertValues(a, delivery.webhook_id));
      this.db.prepare(deliveryAfterAttemptSql).run(...deliveryAfterAttemptValues(a));
    })();
  }

  listAttempts(webhookId: string, limit: number): DeliveryAttemptRecord[] {
    const rows = this.db.prepare(attemptsSql).all(webhookId, limit) as AttemptRow[];
    return rows.map(attemptFromRow);
  }
}
