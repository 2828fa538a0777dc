import {
  listWarmPoolsResponseSchema,
  orgQuotaResponseSchema,
  orgQuotaSchema,
  putWarmPoolRequestSchema,
  warmPoolSchema,
} from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { tokensEqual } from "../lib/server-key.js";
import type { QuotaService } from "../services/quota-service.js";
import type { WarmPoolService } from "../services/warm-pool-service.js";
import { type Authenticate, route } from "./route.js";

/**
 * Lets the request through when it carries the admin key as a Bearer token (compared in constant
 * time); 403 when the server has no admin key, 401 for any other key. `what` names the guarded thing.
 */
export function requireAdminKey(request: FastifyRequest, adminKey: string | undefined, what: string): void {
  if (!adminKey) throw new ApiError("forbidden", `${what} is off: set SANDPIT_ADMIN_KEY`);
  if (!tokensEqual((request.headers.authorization ?? "").replace(/^Bearer /, ""), adminKey)) {
    throw new ApiError("unauthorized", `${what} needs the admin key`);
  }
}

/** The admin API: operators set per-organisation quotas and warm pools with SANDPIT_ADMIN_KEY. */
export function adminRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  quotas: QuotaService,
  warmPools: WarmPoolService,
  adminKey?: string,
) {
  const requireAdmin = (request: FastifyRequest) => requireAdminKey(request, adminKey, "the admin API");

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/admin/warm-pools",
      summary: "Warm pools (admin key)",
      tags: ["admin"],
      public: true,
      responses: { 200: { description: "Pools", schema: listWarmPoolsResponseSchema } },
    },
    async ({ request }) => {
      requireAdmin(request);
      return { pools: await warmPools.list() };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "PUT",
      url: "/v1/admin/warm-pools/{id}",
      summary: "Create or resize a warm pool (admin key); it fills in the background",
      tags: ["admin"],
      public: true,
      body: putWarmPoolRequestSchema,
      responses: { 200: { description: "The pool", schema: warmPoolSchema } },
    },
    async ({ request, params, body }) => {
      requireAdmin(request);
      return warmPools.put({ id: params.id!, template: body.template, size: body.size, ...body.resources });
    },
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/admin/warm-pools/{id}",
      summary: "Remove a warm pool and its ready sandboxes (admin key)",
      tags: ["admin"],
      public: true,
      responses: { 204: { description: "Removed" } },
    },
    async ({ request, params, reply }) => {
      requireAdmin(request);
      await warmPools.delete(params.id!);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/admin/orgs/{org}/quota",
      summary: "An organisation's quota (admin key)",
      tags: ["admin"],
      public: true,
      responses: { 200: { description: "Quota", schema: orgQuotaResponseSchema } },
    },
    async ({ request, params }) => {
      requireAdmin(request);
      return quotas.get(params.org!);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "PUT",
      url: "/v1/admin/orgs/{org}/quota",
      summary: "Set an organisation's quota (admin key); the organisation is created if needed",
      tags: ["admin"],
      public: true,
      body: orgQuotaSchema,
      responses: { 200: { description: "Quota", schema: orgQuotaResponseSchema } },
    },
    async ({ request, params, body }) => {
      requireAdmin(request);
      return quotas.set(params.org!, body);
    },
  );
}
