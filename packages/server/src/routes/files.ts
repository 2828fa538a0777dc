import {
  filePathQuerySchema,
  listFilesResponseSchema,
  mkdirRequestSchema,
  removeFileQuerySchema,
  watchFilesQuerySchema,
  writeFileQuerySchema,
  writeFileResponseSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { sendNdjson } from "../http/streaming.js";
import { uploadBody, writeUpload } from "../http/upload-limit.js";
import type { FileService } from "../services/file-service.js";
import { type Authenticate, route } from "./route.js";

export function fileRoutes(app: FastifyInstance, authenticate: Authenticate, files: FileService, maxUpload: number) {
  // Uploads are streamed to the sandbox as they arrive: no body parsing in this scope.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
    route(
      scope,
      authenticate,
      {
        method: "PUT",
        url: "/v1/sandboxes/{id}/files",
        sandboxParam: "id",
        summary: "Write a file (raw body); parent directories are created",
        tags: ["files"],
        query: writeFileQuerySchema,
        rawBody: { contentType: "application/octet-stream", description: "File content" },
        responses: {
          201: { description: "Written", schema: writeFileResponseSchema },
          413: { description: "Over the upload limit" },
        },
      },
      async ({ request, reply, org, params, query }) => {
        const { body, size } = uploadBody(request.raw, maxUpload);
        const mode = query.mode === undefined ? undefined : Number.parseInt(query.mode, 8);
        const written = await writeUpload(body, (b) => files.write(org, params.id!, query.path, b, size, mode));
        reply.code(201);
        return { path: query.path, size: written.size };
      },
    );
  });

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/files",
      sandboxParam: "id",
      summary: "Read a file (raw bytes)",
      tags: ["files"],
      query: filePathQuerySchema,
      responses: {
        200: { description: "File content", contentType: "application/octet-stream" },
        404: { description: "No such file" },
      },
    },
    async ({ reply, org, params, query }) => {
      const file = await files.read(org, params.id!, query.path);
      reply.header("content-type", "application/octet-stream").header("content-length", file.size);
      return reply.send(file.body);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/files/list",
      sandboxParam: "id",
      summary: "List a directory",
      tags: ["files"],
      query: filePathQuerySchema,
      responses: { 200: { description: "Entries", schema: listFilesResponseSchema } },
    },
    async ({ org, params, query }) => ({ path: query.path, entries: await files.list(org, params.id!, query.path) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/files/watch",
      sandboxParam: "id",
      summary:
        "Stream changes under a directory as NDJSON (ready, then create, modify, delete, rename, chmod) " +
        "until the client disconnects",
      tags: ["files"],
      query: watchFilesQuerySchema,
      responses: { 200: { description: "Events", contentType: "application/x-ndjson" } },
    },
    async ({ org, params, query, request, reply }) => {
      const abort = new AbortController();
      await sendNdjson(
        request,
        reply,
        files.watch(org, params.id!, query.path, query.recursive === "true", abort.signal),
        () => abort.abort(),
      );
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/sandboxes/{id}/files",
      sandboxParam: "id",
      summary: "Remove a file or (recursive=true) a directory",
      tags: ["files"],
      query: removeFileQuerySchema,
      responses: { 204: { description: "Removed" } },
    },
    async ({ org, params, query, reply }) => {
      await files.remove(org, params.id!, query.path, query.recursive === "true");
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/files/mkdir",
      sandboxParam: "id",
      summary: "Create a directory",
      tags: ["files"],
      body: mkdirRequestSchema,
      responses: { 201: { description: "Created" } },
    },
    async ({ org, params, body, reply }) => {
      const mode = body.mode === undefined ? undefined : Number.parseInt(body.mode, 8);
      await files.mkdir(org, params.id!, body.path, body.parents, mode);
      reply.code(201);
      return { path: body.path };
    },
  );
}
