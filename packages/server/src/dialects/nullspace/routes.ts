import { createSandboxRequestSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { OrgRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { claimIdempotencyKey } from "../../http/idempotency.js";
import { proxyHttp } from "../../http/proxy.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import type { VolumeService } from "../../services/volume-service.js";
import { bearerToken, type DialectContext, registerDialect, singleHeader } from "../dialect.js";
import { type NullspaceDesktopServices, nullspaceDesktopRoutes } from "./desktop-routes.js";
import { createRequestFrom, errorReplyOf, isVolumeId, sandboxOf, TRAFFIC_ACCESS_TOKEN_HEADER } from "./mapping.js";
import { createSandboxSchema, type NullspaceCreateSandbox } from "./schemas.js";

export const NULLSPACE_PREFIX = "/nullspace";
const PROXY_PATH = /^\/nullspace\/v1\/sandboxes\/[^/]+\/proxy\/\d{1,5}(\/[^?]*)?(\?.*)?$/;
const ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

/**
 * The request's volume refs as names: a ref that is a volume id must be one of the caller's volumes
 * (404 naming `volumes.N.ref`); names are checked by Sandpit's create, which answers the same way.
 */
async function withVolumeNames(
  volumes: VolumeService,
  org: OrgRecord,
  body: NullspaceCreateSandbox,
): Promise<NullspaceCreateSandbox> {
  if (!body.volumes?.length) return body;
  const resolved = await Promise.all(
    body.volumes.map(async (v, i) => {
      if (!isVolumeId(v.ref)) return v;
      const volume = await volumes.getById(org, v.ref).catch((e: unknown) => {
        if (!(e instanceof ApiError) || e.code !== "volume_not_found") throw e;
        const field = `volumes.${i}.ref`;
        throw new ApiError("volume_not_found", `${field}: volume ${v.ref} not found`, {
          fields: [{ field, rule: "not_found", message: `volume ${v.ref} not found` }],
        });
      });
      return { ...v, ref: volume.name };
    }),
  );
  return { ...body, volumes: resolved };
}

/** What the Nullspace dialect uses. */
export type NullspaceServices = NullspaceDesktopServices &
  Pick<AppServices, "sandboxes" | "warmPools" | "ports" | "volumes">;

/**
 * Nullspace under `/nullspace` (base URL `http://<sandpit>/nullspace`): `POST /v1/sandboxes` with its
 * required Idempotency-Key (shared `volumes` by name or id included), `GET`/`DELETE /v1/sandboxes/{id}`,
 * the desktop (`desktop: {width, height, dpi}` at create, `/v1/sandboxes/{id}/desktop/…`), and the port proxy
 * `/v1/sandboxes/{id}/proxy/{port}/…` guarded by `x-nullspace-traffic-access-token`. Keys are Sandpit
 * keys sent as `Authorization: Bearer`.
 */
export function nullspaceDialect(app: FastifyInstance, services: NullspaceServices) {
  registerDialect(
    app,
    services,
    {
      name: "nullspace",
      prefix: NULLSPACE_PREFIX,
      apiKey: bearerToken,
      errorReply: (error, request) => errorReplyOf(error, request.id),
    },
    routes,
  );
}

function routes(context: DialectContext<NullspaceServices>) {
  const { app, services, authenticate, parse } = context;
  const { sandboxes, warmPools, ports, volumes } = services;
  nullspaceDesktopRoutes(context);

  app.post("/v1/sandboxes", async (request, reply) => {
    const org = await authenticate(request);
    const key = singleHeader(request, "idempotency-key");
    if (key === undefined) {
      throw new ApiError("validation_failed", "Invalid request: the Idempotency-Key header is required", {
        fields: [{ field: "Idempotency-Key", rule: "required", message: "header is required" }],
      });
    }
    const body = parse(createSandboxSchema, request.body ?? {});
    const params = parse(createSandboxRequestSchema, createRequestFrom(await withVolumeNames(volumes, org, body)));
    if (await claimIdempotencyKey(request, reply, org.id, key)) return reply;
    const { record, checkout } = await warmPools.createSandbox(org, params);
    reply.code(201).header("location", `${NULLSPACE_PREFIX}/v1/sandboxes/${record.id}`);
    return sandboxOf(record, { checkout, withTrafficToken: true });
  });

  app.get<{ Params: { id: string } }>("/v1/sandboxes/:id", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    return sandboxOf(await sandboxes.get(org, request.params.id));
  });

  app.delete<{ Params: { id: string } }>("/v1/sandboxes/:id", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    await sandboxes.destroy(org, request.params.id);
    reply.code(204);
  });

  // Port traffic is taken over before body parsing, so that any body streams through untouched.
  const proxy = async (request: FastifyRequest<{ Params: { id: string; port: string } }>, reply: FastifyReply) => {
    const match = PROXY_PATH.exec(request.raw.url ?? "");
    if (!match) throw new ApiError("not_found", `No route for ${request.method} ${request.url.split("?")[0]}`);
    const token = singleHeader(request, TRAFFIC_ACCESS_TOKEN_HEADER);
    const target = await ports.resolve(request.params.id, Number(request.params.port), token).catch((e: unknown) => {
      if (e instanceof ApiError && e.code === "unauthorized") {
        throw new ApiError(
          "unauthorized",
          `this sandbox's ports need its traffic access token (${TRAFFIC_ACCESS_TOKEN_HEADER})`,
        );
      }
      throw e;
    });
    delete request.raw.headers[TRAFFIC_ACCESS_TOKEN_HEADER];
    reply.hijack();
    proxyHttp(request.raw, reply.raw, target, `${match[1] ?? "/"}${match[2] ?? ""}`);
  };
  for (const url of ["/v1/sandboxes/:id/proxy/:port", "/v1/sandboxes/:id/proxy/:port/*"]) {
    app.route<{ Params: { id: string; port: string } }>({
      method: [...ALL_METHODS],
      url,
      ...forSandbox("id"),
      onRequest: proxy,
      handler: async () => undefined,
    });
  }
}
