import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { ApiError } from "../errors.js";
import { tokensEqual } from "../lib/server-key.js";
import type { QuotaService } from "../services/quota-service.js";
import type { WarmPoolService } from "../services/warm-pool-service.js";
import { type Authenticate, route } from "./route.js";

const limit = z.number().int().min(0).nullable();
export const orgQuotaSchema = z.strictObject({
  maxSandboxes: limit.describe("Sandboxes at once (paused ones count); null: the server default"),
  maxVcpus: limit.describe("Sum of vcpus of the organisation's sandboxes"),
  maxMemoryMb: limit.describe("Sum of memoryMb of the organisation's sandboxes"),
});

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

/** The admin API: operators set per-organisation quotas with SANDPIT_ADMIN_KEY. */
const warmPoolSchema = z.strictObject({
  template: z.string().min(1),
  size: z.number().int().min(0).max(64),
  resources: z
    .strictObject({
      vcpus: z.number().int().min(1).max(8).default(1),
      memoryMb: z.number().int().min(256).max(16_384).default(1024),
      diskMb: z.number().int().min(512).max(65_536).default(4096),
    })
    .prefault({}),
});

export function adminRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  quotas: QuotaService,
  warmPools: WarmPoolService,
  adminKey?: string,
) {
  const requireAdmin = (request: FastifyRequest) => requireAdminKey(request, adminKey, "the admin API");
  const effective = z.object({ org: z.string(), own: orgQuotaSchema, effective: orgQuotaSchema });

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/admin/warm-pools",
      summary: "Warm pools (admin key)",
      tags: ["admin"],
      public: true,
      responses: { 200: { description: "Pools" } },
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
      body: warmPoolSchema,
      responses: { 200: { description: "The pool" } },
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
      responses: { 200: { description: "Quota", schema: effective } },
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
      responses: { 200: { description: "Quota", schema: effective } },
    },
    async ({ request, params, body }) => {
      requireAdmin(request);
      return quotas.set(params.org!, body);
    },
  );
}
