import type { EventType } from "@sandpit/contract";
import type Database from "better-sqlite3";
import { randomBase32 } from "../lib/ids.js";
import type { EventDraft } from "./lifecycle-events.js";
import type {
  ClaimedDelivery,
  DeliveryAttemptRecord,
  EventFilter,
  EventRecord,
  WebhookDeliveryRecord,
  WebhookRecord,
} from "./store.js";

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

interface EventRow {
  id: number;
  org_id: string;
  sandbox_id: string;
  type: EventType;
  at: number;
  data_json: string;
}

interface WebhookRow {
  id: string;
  org_id: string;
  url: string;
  secret: string;
  events_json: string;
  created_at: number;
}

interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: number;
  state: WebhookDeliveryRecord["state"];
  attempts: number;
  next_attempt_at: number | null;
}

const eventFromRow = (r: EventRow): EventRecord => ({
  id: r.id,
  orgId: r.org_id,
  sandboxId: r.sandbox_id,
  type: r.type,
  at: r.at,
  data: JSON.parse(r.data_json) as Record<string, unknown>,
});

const webhookFromRow = (r: WebhookRow): WebhookRecord => ({
  id: r.id,
  orgId: r.org_id,
  url: r.url,
  secret: r.secret,
  events: JSON.parse(r.events_json) as EventType[],
  createdAt: r.created_at,
});

const deliveryFromRow = (r: DeliveryRow): WebhookDeliveryRecord => ({
  id: r.id,
  webhookId: r.webhook_id,
  eventId: r.event_id,
  state: r.state,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
});

/**
 * Events, webhooks and the webhook delivery queue in the SQLite store's database. `record` runs inside
 * the caller's transaction, so an event and its deliveries commit together with the change they describe.
 */
export class SqliteEvents {
  private readonly listeners = new Set<(events: EventRecord[]) => void>();

  constructor(private readonly db: Database.Database) {}

  /** Inserts the events and queues a delivery for every webhook of their organisation that wants them. */
  record(drafts: EventDraft[]): EventRecord[] {
    if (drafts.length === 0) return [];
    const insert = this.db.prepare(
      "INSERT INTO events (org_id, sandbox_id, type, at, data_json) VALUES (?, ?, ?, ?, ?)",
    );
    const enqueue = this.db.prepare(
      `INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, next_attempt_at)
       VALUES (?, ?, ?, 'pending', 0, ?)`,
    );
    return drafts.map((d) => {
      const id = Number(insert.run(d.orgId, d.sandboxId, d.type, d.at, JSON.stringify(d.data)).lastInsertRowid);
      for (const hook of this.webhooksOf(d.orgId)) {
        if (hook.events.length === 0 || hook.events.includes(d.type)) {
          enqueue.run(`whd_${randomBase32(20)}`, hook.id, id, d.at);
        }
      }
      return { id, ...d };
    });
  }

  /** Tells the listeners about events that were committed. */
  notify(events: EventRecord[]) {
    if (events.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(events);
      } catch {
        // A listener's failure must not undo or hide a committed change.
      }
    }
  }

  onEvents(listener: (events: EventRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(orgId: string, f: EventFilter): EventRecord[] {
    const where = ["org_id = ?"];
    const values: unknown[] = [orgId];
    if (f.sandboxId !== undefined) {
      where.push("sandbox_id = ?");
      values.push(f.sandboxId);
    }
    if (f.types?.length) {
      where.push(`type IN (${f.types.map(() => "?").join(", ")})`);
      values.push(...f.types);
    }
    if (f.since !== undefined) {
      where.push("at >= ?");
      values.push(f.since);
    }
    if (f.afterId !== undefined) {
      where.push("id > ?");
      values.push(f.afterId);
    }
    if (f.beforeId !== undefined) {
      where.push("id < ?");
      values.push(f.beforeId);
    }
    const rows = this.db
      .prepare(
        `SELECT * FROM events WHERE ${where.join(" AND ")} ORDER BY id ${f.order === "desc" ? "DESC" : "ASC"} LIMIT ?`,
      )
      .all(...values, f.limit) as EventRow[];
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
    this.db
      .prepare("INSERT INTO webhooks (id, org_id, url, secret, events_json, created_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run(w.id, w.orgId, w.url, w.secret, JSON.stringify(w.events), w.createdAt);
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
      this.db
        .prepare(
          `INSERT INTO webhook_attempts (delivery_id, webhook_id, attempt, at, status_code, error, duration_ms, state,
            next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          a.deliveryId,
          delivery.webhook_id,
          a.attempt,
          a.at,
          a.statusCode,
          a.error,
          a.durationMs,
          a.state,
          a.nextAttemptAt,
        );
      this.db
        .prepare("UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ? WHERE id = ?")
        .run(a.state === "retrying" ? "pending" : a.state, a.attempt, a.nextAttemptAt, a.deliveryId);
    })();
  }

  listAttempts(webhookId: string, limit: number): DeliveryAttemptRecord[] {
    const rows = this.db
      .prepare(
        `SELECT a.*, d.event_id, e.type AS event_type FROM webhook_attempts a
         JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id
         WHERE a.webhook_id = ? ORDER BY a.seq DESC LIMIT ?`,
      )
      .all(webhookId, limit) as {
      delivery_id: string;
      event_id: number;
      event_type: EventType;
      attempt: number;
      at: number;
      status_code: number | null;
      error: string | null;
      duration_ms: number;
      state: DeliveryAttemptRecord["state"];
      next_attempt_at: number | null;
    }[];
    return rows.map((r) => ({
      deliveryId: r.delivery_id,
      eventId: r.event_id,
      eventType: r.event_type,
      attempt: r.attempt,
      at: r.at,
      statusCode: r.status_code,
      error: r.error,
      durationMs: r.duration_ms,
      state: r.state,
      nextAttemptAt: r.next_attempt_at,
    }));
  }
}
