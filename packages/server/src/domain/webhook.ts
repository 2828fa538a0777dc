import type { EventType } from "@sandpit/contract";
import type { EventRecord } from "./event.js";

export interface WebhookRecord {
  id: string;
  orgId: string;
  url: string;
  /** Key of the HMAC-SHA256 signature. */
  secret: string;
  /** Event types it receives; empty: all. */
  events: EventType[];
  createdAt: number;
}

/** One event to send to one webhook: queued with the event, retried until delivered or out of attempts. */
export interface WebhookDeliveryRecord {
  id: string;
  webhookId: string;
  eventId: number;
  state: "pending" | "delivered" | "failed";
  /** Attempts made so far. */
  attempts: number;
  nextAttemptAt: number | null;
}

/** A due delivery with what sending it takes. */
export interface ClaimedDelivery {
  delivery: WebhookDeliveryRecord;
  webhook: WebhookRecord;
  event: EventRecord;
}

export interface DeliveryAttemptRecord {
  deliveryId: string;
  eventId: number;
  eventType: EventType;
  attempt: number;
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  /** The delivery's state after this attempt. */
  state: "delivered" | "retrying" | "failed";
  nextAttemptAt: number | null;
}
