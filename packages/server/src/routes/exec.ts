import {
  backgroundExecResponseSchema,
  commandSchema,
  commandStdinRequestSchema,
  execRequestSchema,
  execResultSchema,
  killCommandRequestSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { sendNdjson, wantsNdjson } from "../http/streaming.js";
import type { ExecService } from "../services/exec-service.js";
import { type Authenticate, route } from "./route.js";

export function execRoutes(app: FastifyInstance, authenticate: Authenticate, exec: ExecService) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/exec",
      sandboxParam: "id",
      summary:
        "Run a command. JSON result by default; a live stream with Accept: application/x-ndjson; " +
        "{commandId} at once with background: true",
      tags: ["exec"],
      body: execRequestSchema,
      responses: {
        200: { description: "Finished command, or a background command's id", schema: execResultSchema },
        201: { description: "Background command started", schema: backgroundExecResponseSchema },
        409: { description: "Sandbox not running" },
      },
    },
    async ({ request, reply, org, params, body }) => {
      if (body.background) return exec.startBackground(org, params.id!, body);
      const abort = new AbortController();
      if (wantsNdjson(request)) {
        await sendNdjson(request, reply, exec.stream(org, params.id!, body, abort.signal), () => abort.abort());
        return undefined;
      }
      reply.raw.on("close", () => {
        if (!reply.sent) abort.abort();
      });
      return exec.run(org, params.id!, body, abort.signal);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/commands",
      sandboxParam: "id",
      summary: "List the commands run in the sandbox (foreground and background)",
      tags: ["exec"],
      responses: { 200: { description: "Commands", schema: z.object({ commands: z.array(commandSchema) }) } },
    },
    async ({ org, params }) => ({ commands: await exec.list(org, params.id!) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/commands/{commandId}",
      sandboxParam: "id",
      summary: "Status of a command",
      tags: ["exec"],
      responses: { 200: { description: "Command", schema: commandSchema }, 404: { description: "Not found" } },
    },
    async ({ org, params }) => exec.get(org, params.id!, params.commandId!),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/commands/{commandId}/logs",
      sandboxParam: "id",
      summary: "Output of a background command from its start, streamed until it exits (NDJSON)",
      tags: ["exec"],
      responses: { 200: { description: "NDJSON exec events", contentType: "application/x-ndjson" } },
    },
    async ({ request, reply, org, params }) => {
      const abort = new AbortController();
      await sendNdjson(request, reply, exec.logs(org, params.id!, params.commandId!, abort.signal), () =>
        abort.abort(),
      );
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/commands/{commandId}/kill",
      sandboxParam: "id",
      summary: "Send a signal to a background command's process group",
      tags: ["exec"],
      body: killCommandRequestSchema,
      responses: { 204: { description: "Signalled" } },
    },
    async ({ org, params, body, reply }) => {
      await exec.kill(org, params.id!, params.commandId!, body.signal);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/commands/{commandId}/stdin",
      sandboxParam: "id",
      summary: "Send input to a background command started with stdinOpen; close: true ends its input",
      tags: ["exec"],
      body: commandStdinRequestSchema,
      responses: { 204: { description: "Sent" } },
    },
    async ({ org, params, body, reply }) => {
      const data =
        body.data !== undefined
          ? Buffer.from(body.data)
          : body.dataBase64 !== undefined
            ? Buffer.from(body.dataBase64, "base64")
            : Buffer.alloc(0);
      await exec.writeStdin(org, params.id!, params.commandId!, data, body.close);
      reply.code(204);
      return undefined;
    },
  );
}
