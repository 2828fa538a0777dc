import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { type DialectContext, type DialectServices, registerDialect } from "../dialect.js";
import { execdErrorReply, unsupportedExecdPath } from "./errors.js";
import { ExecdCode } from "./execd-code.js";
import { ExecdCommands } from "./execd-commands.js";
import { ExecdFiles } from "./execd-files.js";
import { accessSandbox } from "./execd-session.js";
import { EXECD_PREFIX } from "./lifecycle.js";
import {
  contextsQuerySchema,
  createCodeContextSchema,
  createSessionSchema,
  deleteContextsQuerySchema,
  downloadQuerySchema,
  interruptQuerySchema,
  listDirectoryQuerySchema,
  logsQuerySchema,
  moveFilesSchema,
  pathsQuerySchema,
  permissionsByPathSchema,
  replaceContentsSchema,
  replaceQuerySchema,
  runCodeSchema,
  runCommandSchema,
  runInSessionSchema,
  searchQuerySchema,
} from "./schemas.js";
import { sendSse } from "./sse.js";

type WithSandbox<T = object> = FastifyRequest<{ Params: { sandboxId: string } & T }>;
type WithContext = WithSandbox<{ contextId: string }>;
type WithSession = WithSandbox<{ sessionId: string }>;

/** How long a `/metrics/watch` stream waits between samples. */
const METRICS_EVERY_MS = 1000;

/** What OpenSandbox's execd API uses. */
export type ExecdServices = DialectServices &
  Pick<AppServices, "sandboxes" | "exec" | "files" | "code" | "maxUploadBytes">;

/**
 * OpenSandbox's in-sandbox execd API for every Sandpit sandbox, at `/opensandbox/execd/<sandboxId>` (the
 * endpoint the lifecycle API hands out for port 44772): ping, commands with SSE streaming, background
 * commands with status and logs, files, directories, metrics, code contexts (`/code`) and bash sessions
 * (`/session`) on Sandpit's code contexts. Callers send the sandbox's
 * `X-EXECD-ACCESS-TOKEN` or an API key of its organisation.
 */
export function execdDialect(app: FastifyInstance, services: ExecdServices) {
  registerDialect(
    app,
    services,
    {
      name: "opensandbox-execd",
      prefix: EXECD_PREFIX,
      apiKey: () => undefined,
      errorReply: (error) => execdErrorReply(error),
      unknownRoute: (request, path) => unsupportedExecdPath(request.method, path, EXECD_PREFIX),
    },
    routes,
  );
}

function routes({ app, services, parse }: DialectContext<ExecdServices>) {
  const commands = new ExecdCommands(services);
  const files = new ExecdFiles(services);
  const code = new ExecdCode(services, commands);
  const open = (request: WithSandbox) => accessSandbox(services, request, request.params.sandboxId, "execd");

  // Uploads are streamed to the sandbox as they arrive: the body is read by the route, not parsed.
  app.addContentTypeParser("multipart/form-data", (_request, _payload, done) => done(null));

  app.get("/:sandboxId/ping", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await services.sandboxes.checkAgent(access.org, access.record.id, 2000);
    return reply.code(200).type("text/plain").send("");
  });

  // ---- commands ----

  app.post("/:sandboxId/command", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const body = parse(runCommandSchema, request.body ?? {});
    if (body.background) {
      await sendSse(request, reply, toAsync(await commands.start(access, body)));
      return;
    }
    const abort = new AbortController();
    await sendSse(request, reply, await commands.run(access, body, abort.signal), () => abort.abort());
  });

  app.delete("/:sandboxId/command", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const { id } = parse(interruptQuerySchema, request.query, "query");
    await commands.interrupt(access, id);
    return reply.code(200).send();
  });

  app.get("/:sandboxId/command/status/:id", forSandbox("sandboxId"), async (request: WithSandbox<{ id: string }>) =>
    commands.status(await open(request), request.params.id),
  );

  app.get(
    "/:sandboxId/command/:id/logs",
    forSandbox("sandboxId"),
    async (request: WithSandbox<{ id: string }>, reply) => {
      const access = await open(request);
      const { cursor } = parse(logsQuerySchema, request.query, "query");
      const logs = await commands.logs(access, request.params.id, cursor);
      return reply
        .header("EXECD-COMMANDS-TAIL-CURSOR", String(logs.cursor))
        .type("text/plain; charset=utf-8")
        .send(logs.content);
    },
  );

  // ---- files ----

  app.get("/:sandboxId/files/info", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    return files.info(access, parse(pathsQuerySchema, request.query, "query").path);
  });

  app.delete("/:sandboxId/files", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await files.deleteFiles(access, parse(pathsQuerySchema, request.query, "query").path);
    return reply.code(200).send();
  });

  app.post("/:sandboxId/files/upload", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    if (!String(request.headers["content-type"] ?? "").startsWith("multipart/form-data")) {
      throw new ApiError("bad_request", "uploads are multipart/form-data: a metadata part, then its file part");
    }
    await files.upload(access, request.raw);
    return reply.code(200).send();
  });

  app.get("/:sandboxId/files/download", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const q = parse(downloadQuerySchema, request.query, "query");
    const file = await files.download(access, q.path, {
      ...(typeof request.headers.range === "string" ? { header: request.headers.range } : {}),
      ...(q.offset !== undefined ? { offset: q.offset } : {}),
      ...(q.limit !== undefined ? { limit: q.limit } : {}),
    });
    if (file.kind === "unsatisfiable") {
      return reply
        .code(416)
        .header("content-range", `bytes */${file.size}`)
        .send({ code: "INVALID_REQUEST_BODY", message: `range not satisfiable for a ${file.size}-byte file` });
    }
    reply
      .header("content-type", "application/octet-stream")
      .header("content-disposition", `attachment; filename="${file.name.replace(/["\\\r\n]/g, "_")}"`)
      .header("accept-ranges", "bytes");
    if (file.kind === "partial") {
      reply
        .code(206)
        .header("content-range", `bytes ${file.span.start}-${file.span.end}/${file.size}`)
        .header("content-length", String(file.span.end - file.span.start + 1));
    } else {
      reply.header("content-length", String(file.size));
    }
    return reply.send(file.body);
  });

  app.post("/:sandboxId/files/mv", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await files.move(access, parse(moveFilesSchema, request.body));
    return reply.code(200).send();
  });

  app.post("/:sandboxId/files/permissions", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await files.setPermissions(access, parse(permissionsByPathSchema, request.body));
    return reply.code(200).send();
  });

  app.post("/:sandboxId/files/replace", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const { verbose } = parse(replaceQuerySchema, request.query, "query");
    const counts = await files.replace(access, parse(replaceContentsSchema, request.body));
    return verbose === "true" ? counts : reply.code(200).send();
  });

  app.get("/:sandboxId/files/search", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    const q = parse(searchQuerySchema, request.query, "query");
    return files.search(access, q.path, q.pattern);
  });

  // ---- directories ----

  app.get("/:sandboxId/directories/list", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    const q = parse(listDirectoryQuerySchema, request.query, "query");
    return files.listDirectory(access, q.path, q.depth);
  });

  app.post("/:sandboxId/directories", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await files.makeDirectories(access, parse(permissionsByPathSchema, request.body));
    return reply.code(200).send();
  });

  app.delete("/:sandboxId/directories", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await files.deleteDirectories(access, parse(pathsQuerySchema, request.query, "query").path);
    return reply.code(200).send();
  });

  // ---- metrics ----

  app.get("/:sandboxId/metrics", forSandbox("sandboxId"), async (request: WithSandbox) =>
    files.metrics(await open(request)),
  );

  app.get("/:sandboxId/metrics/watch", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const abort = new AbortController();
    async function* samples() {
      while (!abort.signal.aborted) {
        yield await files.metrics(access);
        await new Promise((r) => setTimeout(r, METRICS_EVERY_MS));
      }
    }
    await sendSse(request, reply, samples(), () => abort.abort());
  });

  // ---- code contexts and bash sessions ----

  app.post("/:sandboxId/code/context", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    return code.createContext(access, parse(createCodeContextSchema, request.body ?? {}));
  });

  app.get("/:sandboxId/code/contexts", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    return code.listContexts(access, parse(contextsQuerySchema, request.query, "query").language);
  });

  app.delete("/:sandboxId/code/contexts", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await code.deleteContexts(access, parse(deleteContextsQuerySchema, request.query, "query").language);
    return reply.code(200).send();
  });

  app.get("/:sandboxId/code/contexts/:contextId", forSandbox("sandboxId"), async (request: WithContext) =>
    code.getContext(await open(request), request.params.contextId),
  );

  app.delete("/:sandboxId/code/contexts/:contextId", forSandbox("sandboxId"), async (request: WithContext, reply) => {
    await code.deleteContext(await open(request), request.params.contextId);
    return reply.code(200).send();
  });

  app.post("/:sandboxId/code", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    const body = parse(runCodeSchema, request.body ?? {});
    const abort = new AbortController();
    await sendSse(request, reply, await code.run(access, body, abort.signal), () => abort.abort());
  });

  app.delete("/:sandboxId/code", forSandbox("sandboxId"), async (request: WithSandbox, reply) => {
    const access = await open(request);
    await code.interrupt(access, parse(interruptQuerySchema, request.query, "query").id);
    return reply.code(200).send();
  });

  app.post("/:sandboxId/session", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const access = await open(request);
    return code.createSession(access, parse(createSessionSchema, request.body ?? {}).cwd);
  });

  app.post("/:sandboxId/session/:sessionId/run", forSandbox("sandboxId"), async (request: WithSession, reply) => {
    const access = await open(request);
    const body = parse(runInSessionSchema, request.body ?? {});
    const abort = new AbortController();
    const events = await code.runInSession(access, request.params.sessionId, body, abort.signal);
    await sendSse(request, reply, events, () => abort.abort());
  });

  app.delete("/:sandboxId/session/:sessionId", forSandbox("sandboxId"), async (request: WithSession, reply) => {
    await code.deleteSession(await open(request), request.params.sessionId);
    return reply.code(200).send();
  });
}

async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}
