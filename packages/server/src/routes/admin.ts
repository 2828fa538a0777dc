import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { ApiError } from "../errors.js";
import type { QuotaService } from "../services/quota-service.js";
import { type Authenticate, route } from "./route.js";

const limit = z.number().int().min(0).nullable();
export const orgQuotaSchema = z.strictObject({
  maxSandboxes: limit.describe("Sandboxes at once (paused ones count); null: the server default"),
  maxVcpus: limit.describe("Sum of vcpus of the organisation's sandboxes"),
  maxMemoryMb: limit.describe("Sum of memoryMb of the organisation's sandboxes"),
});

/** The admin API: operators set per-organisation quotas with SANDPIT_ADMIN_KEY. */
export function adminRoutes(app: FastifyInstance, authenticate: Authenticate, quotas: QuotaService, adminKey?: string) {
  const requireAdmin = (request: FastifyRequest) => {
    if (!adminKey) throw new ApiError("forbidden", "the admin API is off: set SANDPIT_ADMIN_KEY");
    const given = Buffer.from((request.headers.authorization ?? "").replace(/^Bearer /, ""));
    const expected = Buffer.from(adminKey);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError("unauthorized", "the admin API needs the admin key");
    }
  };
  const effective = z.object({ org: z.string(), own: orgQuotaSchema, effective: orgQuotaSchema });

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
