import { desktopStreamSchema, startDesktopStreamRequestSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import type { DesktopStreamService } from "../services/desktop-stream-service.js";
import { type Authenticate, requestBaseUrl, route } from "./route.js";

/** The live view of a sandbox's desktop: noVNC through the port proxy, with a token per stream. */
export function desktopStreamRoutes(app: FastifyInstance, authenticate: Authenticate, streams: DesktopStreamService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/desktop/stream",
      sandboxParam: "id",
      summary:
        "Start the live view (VNC + noVNC): the running stream when it is already as asked, else a new one " +
        "(new token) that replaces it",
      tags: ["desktop"],
      body: startDesktopStreamRequestSchema,
      responses: {
        200: { description: "The stream, with its ready-to-open URL", schema: desktopStreamSchema },
        409: { description: "Sandbox not running, no display, or the stream's ports taken inside the sandbox" },
      },
    },
    async ({ request, org, params, body }) => streams.start(org, params.id!, body, requestBaseUrl(request)),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/desktop/stream",
      sandboxParam: "id",
      summary: "The live view, if one runs",
      tags: ["desktop"],
      responses: {
        200: { description: "The stream", schema: desktopStreamSchema },
        404: { description: "No live view" },
      },
    },
    async ({ request, org, params }) => streams.get(org, params.id!, requestBaseUrl(request)),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/sandboxes/{id}/desktop/stream",
      sandboxParam: "id",
      summary: "Stop the live view: its token opens nothing any more and its processes end (idempotent)",
      tags: ["desktop"],
      responses: { 204: { description: "Stopped" } },
    },
    async ({ reply, org, params }) => {
      await streams.stop(org, params.id!);
      reply.code(204);
      return undefined;
    },
  );
}
