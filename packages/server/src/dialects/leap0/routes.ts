import { createSandboxRequestSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { z } from "zod";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { bearerToken, type DialectContext, type DialectServices, registerDialect, singleHeader } from "../dialect.js";
import {
  createRequestFrom,
  errorReplyOf,
  leap0MaxSandboxes,
  leap0ValidationError,
  pageOf,
  sandboxOf,
  statusesFor,
} from "./mapping.js";
import { createSandboxSchema, leap0States, listQuerySchema } from "./schemas.js";

export const LEAP0_PREFIX = "/leap0";

type WithId = FastifyRequest<{ Params: { id: string } }>;

/** Leap0's alternative to `Authorization: Bearer`: the key in `leap0-authorization` (with or without "Bearer "). */
function leap0Key(request: FastifyRequest): string | undefined {
  const alternative = singleHeader(request, "leap0-authorization")
    ?.replace(/^Bearer /, "")
    .trim();
  return bearerToken(request) ?? (alternative || undefined);
}

/** Parses with Leap0's field names, unknown fields named one by one. */
function parseLeap0<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw leap0ValidationError(result.error);
  return result.data;
}

/** What the Leap0 dialect uses. */
export type Leap0Services = DialectServices & Pick<AppServices, "sandboxes" | "warmPools">;

/**
 * Leap0 under `/leap0` (base URL `http://<sandpit>/leap0`): `POST /v1/sandbox/` as its document shows
 * it, and get, delete, pause, resume and list. Keys are Sandpit keys, sent as `Authorization: Bearer` or
 * `leap0-authorization`. The per-organisation sandbox limit is SANDPIT_LEAP0_MAX_SANDBOXES (default 3),
 * applied together with the organisation's Sandpit quota: the lower one wins.
 */
export function leap0Dialect(app: FastifyInstance, services: Leap0Services, env = process.env) {
  const maxSandboxes = leap0MaxSandboxes(env.SANDPIT_LEAP0_MAX_SANDBOXES);
  registerDialect(
    app,
    services,
    { name: "leap0", prefix: LEAP0_PREFIX, apiKey: leap0Key, errorReply: (error) => errorReplyOf(error) },
    (ctx) => routes(ctx, maxSandboxes),
  );
}

function routes(
  { app, services, authenticate, parse }: DialectContext<Leap0Services>,
  maxSandboxes: number | undefined,
) {
  const { sandboxes, warmPools } = services;

  // The app ignores trailing slashes: `/v1/sandbox/` (as documented) and `/v1/sandbox` both match.
  app.post("/v1/sandbox", async (request, reply) => {
    const org = await authenticate(request);
    const body = parseLeap0(createSandboxSchema, request.body ?? {});
    const params = parse(createSandboxRequestSchema, createRequestFrom(body));
    const { record } = await warmPools.createSandbox(org, params, maxSandboxes === undefined ? {} : { maxSandboxes });
    reply.code(201);
    return sandboxOf(record);
  });

  app.get("/v1/sandboxes", async (request) => {
    const org = await authenticate(request);
    const query = parse(listQuerySchema, request.query, "query");
    const states = query.state ? [query.state] : leap0States.filter((s) => s !== "deleted");
    const records = await sandboxes.list(org, { statuses: states.flatMap(statusesFor), limit: 10_000 });
    return pageOf(records, query);
  });

  app.get("/v1/sandbox/:id", forSandbox("id"), async (request: WithId) => {
    const org = await authenticate(request);
    return sandboxOf(await sandboxes.get(org, request.params.id));
  });

  app.delete("/v1/sandbox/:id", forSandbox("id"), async (request: WithId) => {
    const org = await authenticate(request);
    await sandboxes.destroy(org, request.params.id);
    return { message: `Sandbox ${request.params.id} deleted` };
  });

  app.post("/v1/sandbox/:id/pause", forSandbox("id"), async (request: WithId) => {
    const org = await authenticate(request);
    return sandboxOf(await sandboxes.pause(org, request.params.id));
  });

  app.post("/v1/sandbox/:id/resume", forSandbox("id"), async (request: WithId) => {
    const org = await authenticate(request);
    return sandboxOf(await sandboxes.resume(org, request.params.id));
  });
}
