import {
  CODE_CONTEXT_HEADER,
  codeContextSchema,
  codeExecutionSchema,
  createCodeContextRequestSchema,
  runCodeRequestSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { sendNdjson, wantsNdjson } from "../http/streaming.js";
import type { CodeService } from "../services/code-service.js";
import { type Authenticate, route } from "./route.js";

export function codeRoutes(app: FastifyInstance, authenticate: Authenticate, code: CodeService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/code/run",
      sandboxParam: "id",
      summary:
        "Run a cell in a code context (or the language's default context). The gathered execution by " +
        "default; its events live with Accept: application/x-ndjson (stdout, stderr, result, error, end)",
      tags: ["code"],
      body: runCodeRequestSchema,
      responses: {
        200: { description: "The cell's execution", schema: codeExecutionSchema },
        404: { description: "No such context" },
        409: { description: "Sandbox not running, or no interpreter for the language" },
      },
    },
    async ({ request, reply, org, params, body }) => {
      const abort = new AbortController();
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
      if (wantsNdjson(request)) {
        // The cell already started (errors up front were thrown), so the response starts at once: a quiet
        // cell must not hold back the headers. The context the cell ran in goes in a header, as the
        // events don't carry it.
        const cell = await code.run(org, params.id!, body, abort.signal);
        reply.raw.setHeader(CODE_CONTEXT_HEADER, cell.contextId);
        await sendNdjson(request, reply, cell.events, () => abort.abort(), { startAtOnce: true });
        return undefined;
      }
      return code.runToEnd(org, params.id!, body, abort.signal);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/code/contexts",
      sandboxParam: "id",
      summary: "Start a code context: a live interpreter with its own variables, cwd and environment",
      tags: ["code"],
      body: createCodeContextRequestSchema,
      responses: { 201: { description: "The context", schema: codeContextSchema } },
    },
    async ({ reply, org, params, body }) => {
      reply.code(201);
      return code.createContext(org, params.id!, body);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/code/contexts",
      sandboxParam: "id",
      summary: "The sandbox's code contexts",
      tags: ["code"],
      responses: { 200: { description: "Contexts", schema: z.object({ contexts: z.array(codeContextSchema) }) } },
    },
    async ({ org, params }) => ({ contexts: await code.listContexts(org, params.id!) }),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/code/contexts/{contextId}/restart",
      sandboxParam: "id",
      summary: "Restart a context's interpreter: its variables are gone, its id, language, cwd and env stay",
      tags: ["code"],
      responses: { 200: { description: "The context", schema: codeContextSchema }, 404: { description: "Not found" } },
    },
    async ({ org, params }) => code.restartContext(org, params.id!, params.contextId!),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/sandboxes/{id}/code/contexts/{contextId}",
      sandboxParam: "id",
      summary: "Stop a context's interpreter and forget it",
      tags: ["code"],
      responses: { 204: { description: "Removed" }, 404: { description: "Not found" } },
    },
    async ({ reply, org, params }) => {
      await code.deleteContext(org, params.id!, params.contextId!);
      reply.code(204);
      return undefined;
    },
  );
}
