import { listEventsQuerySchema, listEventsResponseSchema, streamEventsQuerySchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";
import { writeOrWait } from "../http/write-or-wait.js";
import { type EventService, toEvent } from "../services/event-service.js";
import { type Authenticate, route } from "./route.js";

/** SSE comment lines keep proxies and clients from timing out an idle stream. */
const HEARTBEAT_MS = 15_000;

/** The `Last-Event-ID` header a reconnecting EventSource sends: the id of the last event it got. */
function lastEventId(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === "") return undefined;
  if (!/^\d+$/.test(value.trim())) {
    throw new ApiError("validation_failed", "Invalid request: Last-Event-ID: must be an event id", {
      fields: [{ field: "Last-Event-ID", rule: "invalid_format", message: "must be an event id (a number)" }],
    });
  }
  return Number(value.trim());
}

export function eventRoutes(app: FastifyInstance, authenticate: Authenticate, events: EventService) {
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/events",
      summary:
        "Lifecycle events of the organisation's sandboxes (created, paused, resumed, expired, error, destroyed, " +
        "snapshot.created), newest first; filter by sandbox, type and time; page with nextCursor",
      tags: ["events"],
      query: listEventsQuerySchema,
      responses: { 200: { description: "A page of events", schema: listEventsResponseSchema } },
    },
    async ({ org, query }) => {
      const page = await events.list(org, {
        ...(query.sandboxId ? { sandboxId: query.sandboxId } : {}),
        ...(query.type ? { types: query.type } : {}),
        ...(query.since ? { since: Date.parse(query.since) } : {}),
        ...(query.cursor ? { cursor: Number(query.cursor) } : {}),
        order: query.order,
        limit: query.limit,
      });
      return {
        events: page.events.map(toEvent),
        ...(page.nextCursor === undefined ? {} : { nextCursor: String(page.nextCursor) }),
      };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/events/stream",
      summary:
        "Server-sent events: each lifecycle event as it happens (SSE id = event id, event = type). Resumes " +
        "after the Last-Event-ID header (or ?after=), or from ?since=; otherwise starts now. Comment heartbeats " +
        "every 15 s",
      tags: ["events"],
      query: streamEventsQuerySchema,
      responses: { 200: { description: "text/event-stream of events", contentType: "text/event-stream" } },
    },
    async ({ org, query, request, reply }) => {
      const since = query.since ? Date.parse(query.since) : undefined;
      // Where the stream starts: after the client's last event, from a time, or after the newest event now.
      const afterId =
        lastEventId(request.headers["last-event-id"]) ??
        query.after ??
        (since === undefined ? await events.latestId(org) : undefined);
      const abort = new AbortController();
      const follow = events.follow(
        org,
        {
          ...(query.sandboxId ? { sandboxId: query.sandboxId } : {}),
          ...(query.type ? { types: query.type } : {}),
          ...(since === undefined ? {} : { since }),
          ...(afterId === undefined ? {} : { afterId }),
        },
        abort.signal,
      );
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-accel-buffering": "no",
        "x-request-id": request.id,
      });
      // The retry hint is for EventSource reconnects. An id without data sets the client's Last-Event-ID
      // to the starting position, so a reconnect before the first event misses nothing.
      res.write(`retry: 2000\n${afterId === undefined ? ": connected" : `id: ${afterId}`}\n\n`);
      const heartbeat = setInterval(() => res.write(": heartbeat\n\n"), HEARTBEAT_MS);
      res.on("close", () => abort.abort());
      try {
        for await (const event of follow) {
          if (res.destroyed) break;
          await writeOrWait(res, `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(toEvent(event))}\n\n`);
        }
      } catch (e) {
        request.log.warn({ err: e }, "event stream failed");
      } finally {
        clearInterval(heartbeat);
        abort.abort();
        res.end();
      }
      return undefined;
    },
  );
}
