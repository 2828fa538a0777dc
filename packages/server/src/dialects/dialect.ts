import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { OrgRecord } from "../domain/index.js";
import { ApiError, toApiError, validationError } from "../errors.js";
import type { AppServices } from "../services/index.js";

/**
 * Another provider's API, spoken under its own path prefix: its auth header, its error shape. A dialect
 * only translates — every request ends in Sandpit's own services.
 */
export interface DialectSpec {
  /** Short name, used in logs and the README's table ("vercel", "leap0", ...). */
  name: string;
  /** Path prefix on the Sandpit server, e.g. `/vercel`; the provider's paths follow it unchanged. */
  prefix: string;
  /** The Sandpit API key as the provider's clients send it (its header, Bearer, a query parameter...). */
  apiKey(request: FastifyRequest): string | undefined;
  /** The provider's error response for a Sandpit error (status and body). */
  errorReply(error: ApiError, request: FastifyRequest): { status: number; body: unknown };
  /** The error for a path the dialect has no route for (default 404 "No route"). */
  unknownRoute?(request: FastifyRequest, path: string): ApiError;
}

/** The services every dialect needs: its keys are Sandpit API keys, its errors are counted. */
export type DialectServices = Pick<AppServices, "auth" | "serverMetrics">;

/** What a dialect's routes get: the scoped Fastify instance, its services and helpers bound to the dialect. */
export interface DialectContext<S extends DialectServices = DialectServices> {
  app: FastifyInstance;
  services: S;
  /** The caller's organisation, from the dialect's auth header; 401 in the dialect's shape otherwise. */
  authenticate(request: FastifyRequest): Promise<OrgRecord>;
  /** Parses with a zod schema; failures become Sandpit validation errors naming each field. */
  parse<T extends z.ZodType>(schema: T, value: unknown, where?: "body" | "query"): z.output<T>;
}

/** Bearer token from the Authorization header, the way most providers send their key. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  return header?.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : undefined;
}

/** The value of a header that must appear once. */
export function singleHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  return typeof value === "string" ? value : undefined;
}

/** The dialects registered on each app, for errors answered before routing. */
const dialectsOf = new WeakMap<FastifyInstance, DialectSpec[]>();

/** The dialect whose prefix a URL is under (for a malformed URL, which no route or scope ever sees). */
export function dialectFor(app: FastifyInstance, url: string): DialectSpec | undefined {
  return dialectsOf.get(app)?.find((d) => url === d.prefix || url.startsWith(`${d.prefix}/`));
}

/** Answers an error in the dialect's shape. */
export function sendDialectError(
  services: Pick<AppServices, "serverMetrics">,
  spec: DialectSpec,
  request: FastifyRequest,
  reply: FastifyReply,
  error: ApiError,
) {
  services.serverMetrics.countError(error.code, spec.name);
  for (const [k, v] of Object.entries(error.headers ?? {})) reply.header(k, v);
  const { status, body } = spec.errorReply(error, request);
  return reply.code(status).send(body);
}

/**
 * Registers a dialect: its routes under its prefix, authenticated by its header, with every error
 * (validation, not found, state conflicts, unexpected) answered in its shape. Routes stay out of
 * Sandpit's OpenAPI document: the provider's own document describes them.
 */
export function registerDialect<S extends DialectServices>(
  app: FastifyInstance,
  services: S,
  spec: DialectSpec,
  routes: (ctx: DialectContext<S>) => void,
) {
  dialectsOf.set(app, [...(dialectsOf.get(app) ?? []), spec]);
  app.register(
    async (scope) => {
      const send = (reply: FastifyReply, request: FastifyRequest, error: ApiError) =>
        sendDialectError(services, spec, request, reply, error);
      scope.setErrorHandler((error: FastifyError | ApiError, request, reply) =>
        send(reply, request, toApiError(error, request)),
      );
      scope.setNotFoundHandler((request, reply) => {
        const path = request.url.split("?")[0] ?? "";
        const error =
          spec.unknownRoute?.(request, path) ?? new ApiError("not_found", `No route for ${request.method} ${path}`);
        return send(reply, request, error);
      });
      routes({
        app: scope,
        services,
        authenticate: (request) => services.auth.authenticate(spec.apiKey(request)),
        parse: (schema, value, where = "body") => {
          const result = schema.safeParse(value);
          if (!result.success) throw validationError(result.error, where);
          return result.data;
        },
      });
    },
    { prefix: spec.prefix },
  );
}
