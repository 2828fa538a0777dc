import {
  createdWebhookSchema,
  createWebhookRequestSchema,
  listWebhookDeliveriesQuerySchema,
  listWebhookDeliveriesResponseSchema,
  listWebhooksResponseSchema,
  type Webhook,
  type WebhookDeliveryAttempt,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import type { DeliveryAttemptRecord, WebhookRecord } from "../domain/index.js";
import { iso } from "../lib/clock.js";
import type { WebhookService } from "../services/webhook-service.js";
import { type Authenticate, route } from "./route.js";

/** A webhook as listed: never with its secret. */
function toWebhook(r: WebhookRecord): Webhook {
  return { id: r.id, url: r.url, events: r.events, createdAt: iso(r.createdAt)! };
}

function toAttempt(a: DeliveryAttemptRecord): WebhookDeliveryAttempt {
  return {
    deliveryId: a.deliveryId,
    eventId: a.eventId,
    eventType: a.eventType,
    attempt: a.attempt,
    at: iso(a.at)!,
    statusCode: a.statusCode,
    error: a.error,
    durationMs: a.durationMs,
    state: a.state,
    nextAttemptAt: iso(a.nextAttemptAt),
  };
}

export function webhookRoutes(app: FastifyInstance, authenticate: Authenticate, webhooks: WebhookService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/webhooks",
      summary:
        "Sends the organisation's events to a URL: signed JSON POSTs (X-Sandpit-Signature), retried with " +
        "backoff. The secret (generated when absent) is shown only in this response",
      tags: ["events"],
      body: createWebhookRequestSchema,
      responses: {
        201: { description: "The webhook with its secret", schema: createdWebhookSchema },
        400: { description: "Invalid URL (or one that resolves to a non-public address), secret or event type" },
      },
    },
    async ({ org, body, reply }) => {
      const record = await webhooks.create(org, body);
      reply.code(201).header("location", `/v1/webhooks/${record.id}`);
      return { ...toWebhook(record), secret: record.secret };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/webhooks",
      summary: "The organisation's webhooks (without their secrets)",
      tags: ["events"],
      responses: { 200: { description: "Webhooks", schema: listWebhooksResponseSchema } },
    },
    async ({ org }) => ({ webhooks: (await webhooks.list(org)).map(toWebhook) }),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/webhooks/{id}",
      summary: "Removes a webhook; deliveries still queued for it are dropped",
      tags: ["events"],
      responses: { 204: { description: "Removed" }, 404: { description: "No such webhook" } },
    },
    async ({ org, params, reply }) => {
      await webhooks.delete(org, params.id!);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/webhooks/{id}/deliveries",
      summary: "The webhook's delivery log: every attempt, newest first, with the status code or error",
      tags: ["events"],
      query: listWebhookDeliveriesQuerySchema,
      responses: {
        200: { description: "Attempts", schema: listWebhookDeliveriesResponseSchema },
        404: { description: "No such webhook" },
      },
    },
    async ({ org, params, query }) => ({
      deliveries: (await webhooks.deliveries(org, params.id!, query.limit)).map(toAttempt),
    }),
  );
}
