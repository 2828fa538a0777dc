import type http from "node:http";
import { text } from "node:stream/consumers";
import { MAX_CELL_TIMEOUT_MS } from "@sandpit/contract";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError, validationError } from "../../errors.js";
import { sendStream } from "../../http/streaming.js";
import type { TrafficRouter } from "../../http/traffic-router.js";
import { uploadBody } from "../../http/upload-limit.js";
import type { CodeService } from "../../services/code-service.js";
import type { SandboxService } from "../../services/sandbox-service.js";
import {
  CODE_INTERPRETER_PORT,
  type CodeInterpreterRoute,
  contextOf,
  createContextRequestSchema,
  e2bLines,
  executeRequestSchema,
  failureLineOf,
  languageFrom,
  routeOf,
} from "./code-interpreter-mapping.js";
import { sendError, sendJson } from "./envd-replies.js";

/** Largest request body: a cell of the native API's largest size, in JSON. */
const MAX_BODY_BYTES = 17 * 1024 * 1024;

const ACCESS_TOKEN_HEADER = "x-access-token";
const TRAFFIC_TOKEN_HEADER = "e2b-traffic-access-token";

const header = (req: http.IncomingMessage, name: string) => {
  const value = req.headers[name];
  return typeof value === "string" ? value : undefined;
};

async function readJson<T extends z.ZodType>(req: http.IncomingMessage, schema: T): Promise<z.infer<T>> {
  const body = await text(uploadBody(req, MAX_BODY_BYTES).body);
  let json: unknown = {};
  if (body.trim() !== "") {
    try {
      json = JSON.parse(body);
    } catch {
      throw new ApiError("bad_request", "the body is not JSON");
    }
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw validationError(parsed.error);
  return parsed.data;
}

/**
 * E2B's code interpreter (`@e2b/code-interpreter`: runCode and code contexts) over Sandpit's code
 * contexts, on port 49999 of every sandbox: `E2B_SANDBOX_URL` with `E2b-Sandbox-Port: 49999`, or the host
 * name `49999-<id>.<SANDPIT_DOMAIN>`. Cells stream as E2B's NDJSON lines; a client that goes away (the
 * SDK's `timeoutMs` aborts its request) interrupts the cell, and the context keeps its state.
 *
 * Running code needs the sandbox's envd access token (`X-Access-Token`, which the SDK sends with every
 * cell). The SDK sends its context calls with no token but the traffic token of a sandbox whose traffic
 * is not public, so those are open to what opens the sandbox's ports (E2B's `allowPublicTraffic`).
 */
export function registerCodeInterpreter(
  traffic: TrafficRouter,
  deps: { sandboxes: SandboxService; code: CodeService },
) {
  const { sandboxes, code } = deps;

  async function access(
    req: http.IncomingMessage,
    sandboxId: string,
    route: CodeInterpreterRoute,
  ): Promise<{ org: OrgRecord; record: SandboxRecord }> {
    const accessToken = header(req, ACCESS_TOKEN_HEADER);
    // A wrong token and an unknown sandbox answer alike.
    const opened =
      accessToken !== undefined || route.kind === "execute"
        ? await sandboxes.byClientToken(sandboxId, "e2b-envd", accessToken)
        : await sandboxes.byTrafficToken(sandboxId, header(req, TRAFFIC_TOKEN_HEADER));
    if (!opened) {
      const needs = route.kind === "execute" ? "X-Access-Token" : "X-Access-Token or E2B-Traffic-Access-Token";
      throw new ApiError("unauthorized", `invalid or missing access token for this sandbox (${needs})`);
    }
    return opened;
  }

  async function handle(request: FastifyRequest, reply: FastifyReply, sandboxId: string, path: string) {
    const req = request.raw;
    const res = reply.raw;
    const url = new URL(path, "http://code-interpreter");
    const route = routeOf(req.method ?? "GET", url.pathname);
    if (route.kind === "health") {
      sendJson(res, 200, "OK");
      return;
    }
    const { org, record } = await access(req, sandboxId, route);
    switch (route.kind) {
      case "execute": {
        const body = await readJson(req, executeRequestSchema);
        if (body.context_id && body.language) {
          throw new ApiError("bad_request", "Only one of context_id or language can be provided");
        }
        const language = languageFrom(body.language);
        // E2B has no server-side cell timeout: the SDK's `timeoutMs` ends the request, which interrupts.
        const abort = new AbortController();
        res.on("close", () => {
          if (!res.writableFinished) abort.abort();
        });
        const cell = await code.run(
          org,
          record.id,
          {
            code: body.code,
            ...(body.context_id ? { contextId: body.context_id } : {}),
            ...(language ? { language } : {}),
            ...(body.env_vars ? { env: body.env_vars } : {}),
            timeoutMs: MAX_CELL_TIMEOUT_MS,
          },
          abort.signal,
        );
        await sendStream(
          request,
          reply,
          e2bLines(cell.events),
          {
            headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" },
            encode: (line) => `${JSON.stringify(line)}\n`,
            encodeError: (e) => `${JSON.stringify(failureLineOf(e))}\n`,
            // The SDK starts its `timeoutMs` clock when the response starts: start it with the cell.
            startAtOnce: true,
          },
          () => abort.abort(),
        );
        return;
      }
      case "create-context": {
        const body = await readJson(req, createContextRequestSchema);
        const context = await code.createContext(org, record.id, {
          language: languageFrom(body.language) ?? "python",
          ...(body.cwd ? { cwd: body.cwd } : {}),
        });
        sendJson(res, 200, contextOf(context));
        return;
      }
      case "list-contexts":
        sendJson(res, 200, (await code.listContexts(org, record.id)).map(contextOf));
        return;
      case "restart-context":
        await code.restartContext(org, record.id, route.contextId);
        res.writeHead(204).end();
        return;
      case "delete-context":
        await code.deleteContext(org, record.id, route.contextId);
        res.writeHead(204).end();
        return;
    }
  }

  traffic.onPort(CODE_INTERPRETER_PORT, async (request, reply, target) => {
    reply.hijack();
    reply.raw.setHeader("x-request-id", request.id);
    try {
      await handle(request, reply, target.sandboxId, target.path);
    } catch (e) {
      sendError(reply.raw, e);
    }
  });
}
