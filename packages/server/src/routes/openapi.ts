import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { renderApiDocsPage } from "../http/api-docs-page.js";
import { type Authenticate, route, routeRegistry } from "./route.js";

const errorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

const jsonSchema = (schema: z.ZodType, io: "input" | "output") =>
  z.toJSONSchema(schema, { io, unrepresentable: "any", target: "openapi-3.0" });

/** The OpenAPI 3 document, generated from the same zod schemas the routes validate with. */
export function openApiDocument() {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const def of routeRegistry) {
    const responses: Record<string, unknown> = {};
    for (const [status, doc] of Object.entries(def.responses)) {
      const content = doc.schema
        ? { "application/json": { schema: jsonSchema(doc.schema, "output") } }
        : doc.contentType
          ? { [doc.contentType]: {} }
          : Number(status) >= 400
            ? { "application/json": { schema: jsonSchema(errorBodySchema, "output") } }
            : undefined;
      responses[status] = { description: doc.description, ...(content ? { content } : {}) };
    }
    const parameters = [...def.url.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    if (def.query) {
      const schema = jsonSchema(def.query, "input") as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, prop] of Object.entries(schema.properties ?? {})) {
        parameters.push({
          name,
          in: "query",
          required: schema.required?.includes(name) ?? false,
          schema: prop as { type: string },
        });
      }
    }
    paths[def.url] ??= {};
    paths[def.url]![def.method.toLowerCase()] = {
      summary: def.summary,
      tags: def.tags,
      ...(parameters.length ? { parameters } : {}),
      ...(def.body
        ? {
            requestBody: { required: true, content: { "application/json": { schema: jsonSchema(def.body, "input") } } },
          }
        : def.rawBody
          ? {
              requestBody: {
                required: true,
                content: { [def.rawBody.contentType]: {} },
                description: def.rawBody.description,
              },
            }
          : {}),
      ...(def.public ? { security: [] } : {}),
      responses,
    };
  }
  return {
    openapi: "3.0.3",
    info: { title: "Sandpit API", version: "1", description: "Self-hosted gVisor sandboxes" },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}

export function openApiRoutes(app: FastifyInstance, authenticate: Authenticate) {
  // A page for people, not an API route: it is left out of the document it shows.
  app.get("/docs", async (_request, reply) => {
    reply
      .type("text/html; charset=utf-8")
      .header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'")
      .header("x-content-type-options", "nosniff");
    return renderApiDocsPage(openApiDocument());
  });
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/openapi.json",
      summary: "This document",
      tags: ["meta"],
      public: true,
      responses: { 200: { description: "OpenAPI 3 document" } },
    },
    async () => openApiDocument(),
  );
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/health",
      summary: "Liveness of the server",
      tags: ["meta"],
      public: true,
      responses: { 200: { description: "OK", schema: z.object({ ok: z.boolean() }) } },
    },
    async () => ({ ok: true }),
  );
}
