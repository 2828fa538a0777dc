import { z } from "zod";
import { timestampSchema } from "./common.js";

/**
 * Lifecycle events, recorded per organisation whenever a sandbox (or snapshot) changes state:
 * - `sandbox.created`: it is running (cold start or taken from a warm pool)
 * - `sandbox.paused` / `sandbox.resumed`: `data.reason` says why it paused (requested, timeout, idle, snapshot)
 * - `sandbox.expired`: its timeout ran out; `data.action` is what follows (destroy or pause)
 * - `sandbox.error`: it died or could not start; `data.reason` is oom, crashed, pause_failed, start_failed,
 *   lost, or node_lost (its node stopped renewing its lease in the cluster)
 * - `sandbox.destroyed`: `data.reason` is requested, expired, or another cause
 * - `sandbox.moved`: another node of the cluster took the paused sandbox over (`data.from`, `data.to`:
 *   node ids) to resume it there — a drain moves running sandboxes paused → moved → resumed (reason `move`)
 * - `snapshot.created`: a snapshot of the sandbox is ready
 * `data.node` names the node of the cluster the sandbox lives on.
 */
export const eventTypes = [
  "sandbox.created",
  "sandbox.paused",
  "sandbox.resumed",
  "sandbox.expired",
  "sandbox.error",
  "sandbox.destroyed",
  "sandbox.moved",
  "snapshot.created",
] as const;
export const eventTypeSchema = z.enum(eventTypes);
export type EventType = z.infer<typeof eventTypeSchema>;

export const eventSchema = z.object({
  id: z.number().int().describe("Increases with every event; the SSE stream's event id"),
  type: eventTypeSchema,
  sandboxId: z.string(),
  at: timestampSchema,
  data: z.record(z.string(), z.unknown()).describe("Details of the transition, e.g. reason"),
});
export type SandpitEvent = z.infer<typeof eventSchema>;

/** `a,b,c` in a query string, each one an event type. */
const eventTypeListSchema = z
  .string()
  .transform((s) => s.split(",").map((t) => t.trim()))
  .pipe(z.array(eventTypeSchema).min(1))
  .describe(`Comma-separated event types: ${eventTypes.join(", ")}`);

const sinceSchema = z.string().datetime({ offset: true }).describe("RFC 3339 time: only events at or after it");

export const listEventsQuerySchema = z.object({
  sandboxId: z.string().optional(),
  type: eventTypeListSchema.optional(),
  since: sinceSchema.optional(),
  order: z.enum(["desc", "asc"]).default("desc").describe("desc: newest first (default); asc: oldest first"),
  cursor: z
    .string()
    .regex(/^\d+$/, "must be a nextCursor from a previous page")
    .optional()
    .describe("nextCursor of the previous page"),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
export type ListEventsQuery = z.input<typeof listEventsQuerySchema>;

export const listEventsResponseSchema = z.object({
  events: z.array(eventSchema),
  nextCursor: z.string().optional().describe("Present when there are more events: pass it as ?cursor="),
});

export const streamEventsQuerySchema = z.object({
  sandboxId: z.string().optional(),
  type: eventTypeListSchema.optional(),
  since: sinceSchema.optional(),
  after: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .describe("Only events with a larger id (as the Last-Event-ID header, which wins when both are given)"),
});

export const createWebhookRequestSchema = z.strictObject({
  url: z
    .string()
    .max(2048)
    .url()
    .refine((u) => /^https?:\/\//i.test(u), "must be an http or https URL"),
  secret: z
    .string()
    .min(16, "must be at least 16 characters")
    .max(256)
    .optional()
    .describe("Key of the HMAC-SHA256 signature; generated when absent"),
  events: z.array(eventTypeSchema).max(eventTypes.length).optional().describe("Event types to send; default all"),
});
export type CreateWebhookRequest = z.input<typeof createWebhookRequestSchema>;

export const webhookSchema = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(eventTypeSchema).describe("Event types it receives; empty means all"),
  createdAt: timestampSchema,
});
export type Webhook = z.infer<typeof webhookSchema>;

export const createdWebhookSchema = webhookSchema.extend({
  secret: z.string().describe("Shown only in this response: keep it to verify X-Sandpit-Signature"),
});
export type CreatedWebhook = z.infer<typeof createdWebhookSchema>;

export const listWebhooksResponseSchema = z.object({ webhooks: z.array(webhookSchema) });

/** One attempt to deliver one event to one webhook. */
export const webhookDeliveryAttemptSchema = z.object({
  deliveryId: z.string().describe("Same for every attempt of one event; sent as X-Sandpit-Delivery"),
  eventId: z.number().int(),
  eventType: eventTypeSchema,
  attempt: z.number().int().describe("1 for the first try"),
  at: timestampSchema,
  statusCode: z.number().int().nullable().describe("The receiver's HTTP status; null when there was none"),
  error: z.string().nullable().describe("Why the attempt failed (timeout, connection refused, HTTP 500…)"),
  durationMs: z.number().int(),
  state: z
    .enum(["delivered", "retrying", "failed"])
    .describe("delivered (2xx), retrying (another attempt follows), failed (no attempts left)"),
  nextAttemptAt: timestampSchema.nullable(),
});
export type WebhookDeliveryAttempt = z.infer<typeof webhookDeliveryAttemptSchema>;

export const listWebhookDeliveriesQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const listWebhookDeliveriesResponseSchema = z.object({
  deliveries: z.array(webhookDeliveryAttemptSchema).describe("Attempts, newest first"),
});
