import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { OrgRecord } from "../domain/index.js";
import { ApiError, validationError } from "../errors.js";
import { claimIdempotencyKey } from "../http/idempotency.js";

type HttpMethod = "GET" | "POST" | "PUT" | "DELETE" | "PATCH";

export interface ResponseDoc {
  description: string;
  schema?: z.ZodType;
  /** Non-JSON bodies: application/x-ndjson, application/octet-stream. */
  contentType?: string;
}

export interface RouteDefinition<B extends z.ZodType | undefined, Q extends z.ZodType | undefined> {
  method: HttpMethod;
  url: string;
  summary: string;
  tags: string[];
  body?: B;
  query?: Q;
  /** Raw request body (file uploads): no JSON parsing, the handler reads the stream. */
  rawBody?: { contentType: string; description: string };
  responses: Record<number, ResponseDoc>;
  /** Public routes skip authentication. */
  public?: boolean;
  /** The path parameter that holds a sandbox id: the node the sandbox lives on answers the route. */
  sandboxParam?: string;
}

type Parsed<T> = T extends z.ZodType ? z.output<T> : undefined;

export interface RouteContext<B, Q> {
  request: FastifyRequest;
  reply: FastifyReply;
  body: B;
  query: Q;
  params: Record<string, string>;
  org: OrgRecord;
}

/** Every route registered through `route`, for the OpenAPI document. */
export const routeRegistry: RouteDefinition<z.ZodType | undefined, z.ZodType | undefined>[] = [];

export type Authenticate = (request: FastifyRequest) => Promise<OrgRecord>;

/** Where the caller reached this server (scheme and host): URLs the API hands out are built on it. */
export const requestBaseUrl = (request: FastifyRequest) =>
  `${request.protocol}://${request.headers.host ?? request.hostname}`;

function parse<T extends z.ZodType>(schema: T, value: unknown, where: "body" | "query"): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}

/**
 * Registers a route whose body and query are validated by the contract's schemas, and records it for
 * the OpenAPI document. Handlers get the caller's organisation; they return the JSON body, or send the
 * reply themselves (streams) and return `undefined`.
 */
export function route<B extends z.ZodType | undefined, Q extends z.ZodType | undefined>(
  app: FastifyInstance,
  authenticate: Authenticate,
  def: RouteDefinition<B, Q>,
  handler: (ctx: RouteContext<Parsed<B>, Parsed<Q>>) => Promise<unknown>,
) {
  if (!routeRegistry.some((r) => r.method === def.method && r.url === def.url)) {
    routeRegistry.push(def as RouteDefinition<z.ZodType | undefined, z.ZodType | undefined>);
  }
  const fastifyUrl = def.url.replace(/\{(\w+)\}/g, ":$1");
  app.route({
    method: def.method,
    url: fastifyUrl,
    config: { sandboxParam: def.sandboxParam },
    handler: async (request, reply) => {
      const org = def.public ? (undefined as unknown as OrgRecord) : await authenticate(request);
      if (def.body && request.body === undefined) {
        throw new ApiError("validation_failed", "Invalid request: a JSON body is required", {
          fields: [{ field: "(body)", rule: "required", message: "a JSON body is required" }],
        });
      }
      const body = (def.body ? parse(def.body, request.body, "body") : undefined) as Parsed<B>;
      const query = (def.query ? parse(def.query, request.query, "query") : undefined) as Parsed<Q>;
      const idempotencyKey = request.headers["idempotency-key"];
      const streamed = (request.headers.accept ?? "").includes("application/x-ndjson");
      if (def.method === "POST" && !def.public && typeof idempotencyKey === "string" && !streamed) {
        if (await claimIdempotencyKey(request, reply, org.id, idempotencyKey)) return reply;
      }
      return handler({ request, reply, body, query, params: request.params as Record<string, string>, org });
    },
  });
}
