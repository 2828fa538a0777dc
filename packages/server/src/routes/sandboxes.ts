import {
  createSandboxRequestSchema,
  listSandboxesQuerySchema,
  listSandboxesResponseSchema,
  type SandboxStatus,
  sandboxSchema,
  sandboxStatuses,
  setTimeoutRequestSchema,
  updateSandboxRequestSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";
import { PhaseTimes, timingPhases } from "../lib/phases.js";
import type { SandboxService } from "../services/sandbox-service.js";
import { toSandbox } from "../services/sandbox-service.js";
import type { WarmPoolService } from "../services/warm-pool-service.js";
import { type Authenticate, route } from "./route.js";

const errors = { 401: { description: "Missing or invalid API key" } };

/** `metadata.KEY=VALUE` query parameters → a metadata filter. */
function metadataFilter(query: Record<string, unknown>): Record<string, string> {
  const filter: Record<string, string> = {};
  for (const [k, v] of Object.entries(query)) {
    if (k.startsWith("metadata.") && typeof v === "string") filter[k.slice("metadata.".length)] = v;
  }
  return filter;
}

export function sandboxRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  sandboxes: SandboxService,
  warmPools: WarmPoolService,
) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes",
      summary: "Create a sandbox; answers once it can run commands",
      tags: ["sandboxes"],
      body: createSandboxRequestSchema,
      responses: { 201: { description: "Created", schema: sandboxSchema }, 400: { description: "Invalid" }, ...errors },
    },
    async ({ body, org, reply }) => {
      // Each phase of the create (rootfs, netns, runsc, agent, nft, db, ...) in a Server-Timing header.
      const phases = new PhaseTimes();
      const started = performance.now();
      const { record, checkout } = await timingPhases(phases, () => warmPools.createSandbox(org, body));
      phases.add("total", performance.now() - started);
      reply.code(201).header("location", `/v1/sandboxes/${record.id}`).header("server-timing", phases.serverTiming());
      return { ...toSandbox(record), ...(checkout ? { warmPoolCheckout: checkout } : {}) };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes",
      summary: "List sandboxes; filter by status and metadata.KEY=VALUE",
      tags: ["sandboxes"],
      query: listSandboxesQuerySchema.passthrough(),
      responses: { 200: { description: "The sandboxes", schema: listSandboxesResponseSchema }, ...errors },
    },
    async ({ query, org, request }) => {
      const statuses = query.status?.split(",") as SandboxStatus[] | undefined;
      for (const s of statuses ?? []) {
        if (!sandboxStatuses.includes(s)) {
          throw new ApiError("validation_failed", `Invalid request: status: unknown status "${s}"`, {
            fields: [{ field: "status", rule: "enum", message: `must be one of ${sandboxStatuses.join(", ")}` }],
          });
        }
      }
      const records = await sandboxes.list(org, {
        ...(statuses ? { statuses } : {}),
        metadata: metadataFilter(request.query as Record<string, unknown>),
        includeDestroyed: query.includeDestroyed === "true",
        limit: query.limit,
      });
      return { sandboxes: records.map(toSandbox) };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}",
      sandboxParam: "id",
      summary: "Get a sandbox",
      tags: ["sandboxes"],
      responses: { 200: { description: "The sandbox", schema: sandboxSchema }, 404: { description: "Not found" } },
    },
    async ({ params, org }) => toSandbox(await sandboxes.get(org, params.id!)),
  );

  route(
    app,
    authenticate,
    {
      method: "PATCH",
      url: "/v1/sandboxes/{id}",
      sandboxParam: "id",
      summary: "Change a sandbox's metadata (merge: a string sets a key, null removes it)",
      tags: ["sandboxes"],
      body: updateSandboxRequestSchema,
      responses: {
        200: { description: "The updated sandbox", schema: sandboxSchema },
        400: { description: "Invalid" },
        404: { description: "Not found" },
        409: { description: "Destroyed" },
      },
    },
    async ({ params, org, body }) => toSandbox(await sandboxes.updateMetadata(org, params.id!, body.metadata ?? {})),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/sandboxes/{id}",
      sandboxParam: "id",
      summary: "Destroy a sandbox (idempotent)",
      tags: ["sandboxes"],
      responses: { 204: { description: "Destroyed" }, 404: { description: "Not found" } },
    },
    async ({ params, org, reply }) => {
      await sandboxes.destroy(org, params.id!);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/timeout",
      sandboxParam: "id",
      summary: "Set a new expiry, timeoutMs from now (keepalive)",
      tags: ["sandboxes"],
      body: setTimeoutRequestSchema,
      responses: { 200: { description: "The sandbox", schema: sandboxSchema }, 409: { description: "Not running" } },
    },
    async ({ params, org, body }) => toSandbox(await sandboxes.setTimeout(org, params.id!, body.timeoutMs)),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/pause",
      sandboxParam: "id",
      summary: "Checkpoint memory and processes and stop the sandbox (status paused)",
      tags: ["lifecycle"],
      responses: { 200: { description: "The paused sandbox", schema: sandboxSchema }, 409: { description: "State" } },
    },
    async ({ params, org }) => toSandbox(await sandboxes.pause(org, params.id!)),
  );

  for (const url of ["/v1/sandboxes/{id}/resume", "/v1/sandboxes/{id}/wake"]) {
    route(
      app,
      authenticate,
      {
        method: "POST",
        url,
        sandboxParam: "id",
        summary: "Resume a paused sandbox with its processes and memory as they were",
        tags: ["lifecycle"],
        responses: {
          200: { description: "The running sandbox", schema: sandboxSchema },
          409: { description: "State" },
        },
      },
      async ({ params, org }) => toSandbox(await sandboxes.resume(org, params.id!)),
    );
  }
}
