import { sandboxMetricsQuerySchema, sandboxMetricsSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";
import type { MetricsSampler } from "../services/metrics-sampler.js";
import type { SandboxService } from "../services/sandbox-service.js";
import type { ServerMetrics } from "../services/server-metrics.js";
import { requireAdminKey } from "./admin.js";
import { type Authenticate, route } from "./route.js";

export interface MetricsRouteOptions {
  /** Serve `/metrics` without the admin key (SANDPIT_METRICS_PUBLIC=true). */
  metricsPublic: boolean;
  adminKey: string | undefined;
}

export function metricsRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  sandboxes: SandboxService,
  sampler: MetricsSampler,
  serverMetrics: ServerMetrics,
  opts: MetricsRouteOptions,
) {
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/metrics",
      sandboxParam: "id",
      summary:
        "A sandbox's resource use over the last 10 minutes: CPU, memory, disk, network and processes, one " +
        "sample per interval (SANDPIT_METRICS_INTERVAL_MS) while it runs",
      tags: ["observability"],
      query: sandboxMetricsQuerySchema,
      responses: {
        200: { description: "Samples, oldest first", schema: sandboxMetricsSchema },
        404: { description: "No such sandbox in the caller's organisation" },
      },
    },
    async ({ org, params, query }) => {
      const record = await sandboxes.get(org, params.id!);
      return sampler.metricsOf(record.id, query.since ? Date.parse(query.since) : undefined);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/metrics",
      summary:
        "Prometheus metrics of the server (text exposition format). Needs the admin key as a Bearer token " +
        "unless SANDPIT_METRICS_PUBLIC=true",
      tags: ["observability"],
      public: true,
      responses: {
        200: { description: "Metrics", contentType: "text/plain; version=0.0.4" },
        401: { description: "Not the admin key" },
        403: { description: "No admin key is configured and the metrics are not public" },
      },
    },
    async ({ request, reply }) => {
      if (!opts.metricsPublic) {
        if (!opts.adminKey) {
          throw new ApiError(
            "forbidden",
            "/metrics needs SANDPIT_ADMIN_KEY (sent as a Bearer token) or SANDPIT_METRICS_PUBLIC=true",
          );
        }
        requireAdminKey(request, opts.adminKey, "/metrics");
      }
      const { contentType, body } = await serverMetrics.exposition();
      reply.type(contentType);
      return body;
    },
  );
}
