import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import { daytonaDialect } from "./dialects/daytona/index.js";
import { dialectFor, sendDialectError } from "./dialects/dialect.js";
import { e2bDialect } from "./dialects/e2b/index.js";
import { leap0Dialect } from "./dialects/leap0/routes.js";
import { nullspaceDialect } from "./dialects/nullspace/routes.js";
import { openSandboxDialect } from "./dialects/opensandbox/index.js";
import { vercelDialect } from "./dialects/vercel/routes.js";
import { zwrmDialect } from "./dialects/zwrm/routes.js";
import { ApiError, clientConnectionError, errorEnvelope, toApiError } from "./errors.js";
import { recordIdempotentResponse } from "./http/idempotency.js";
import { forwardToOwners } from "./http/sandbox-forwarding.js";
import { TrafficRouter } from "./http/traffic-router.js";
import { answerBeforeBody } from "./http/upload-limit.js";
import { newRequestId } from "./lib/ids.js";
import { adminRoutes } from "./routes/admin.js";
import { codeRoutes } from "./routes/code.js";
import { consoleRoutes } from "./routes/console.js";
import { desktopRoutes } from "./routes/desktop.js";
import { desktopStreamRoutes } from "./routes/desktop-stream.js";
import { egressRoutes } from "./routes/egress.js";
import { eventRoutes } from "./routes/events.js";
import { execRoutes } from "./routes/exec.js";
import { fileRoutes } from "./routes/files.js";
import { imageRoutes } from "./routes/images.js";
import { internalRoutes } from "./routes/internal.js";
import { metricsRoutes } from "./routes/metrics.js";
import { nodeRoutes } from "./routes/nodes.js";
import { openApiRoutes } from "./routes/openapi.js";
import { portRoutes } from "./routes/ports.js";
import type { Authenticate } from "./routes/route.js";
import { sandboxRoutes } from "./routes/sandboxes.js";
import { snapshotRoutes } from "./routes/snapshots.js";
import { templateRoutes } from "./routes/templates.js";
import { terminalRoutes } from "./routes/terminals.js";
import { volumeRoutes } from "./routes/volumes.js";
import { webhookRoutes } from "./routes/webhooks.js";
import type { AppServices } from "./services/index.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the HTTP app over the services. Never listens: `startServer` does. */
export function buildApp(services: AppServices, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: 32 * 1024 * 1024,
    // Streams (logs, port traffic, WebSockets) can stay open for hours: closing does not wait for them.
    forceCloseConnections: true,
    // One line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : newRequestId();
    },
    routerOptions: { ignoreTrailingSlash: true },
    // Errors before routing (a percent-encoding that is not UTF-8) get the API's envelope too.
    frameworkErrors: (error, request, reply) => {
      const apiError = toApiError(error, request);
      const dialect = dialectFor(app, request.url);
      return dialect
        ? sendDialectError(services, dialect, request, reply, apiError)
        : sendError(request, reply, apiError);
    },
    // Requests Node's HTTP parser refuses (headers over the limit, raw non-ASCII bytes in the URL)
    // never become requests: the answer is written on the socket.
    clientErrorHandler: (error: NodeJS.ErrnoException, socket: Socket) => {
      const apiError = socket.writable ? clientConnectionError(error) : undefined;
      if (apiError) {
        services.serverMetrics.countError(apiError.code);
        const body = JSON.stringify(errorEnvelope(apiError));
        socket.write(
          `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status] ?? ""}\r\n` +
            `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
            `Connection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    },
  });

  const sendError = (request: FastifyRequest, reply: FastifyReply, apiError: ApiError) => {
    services.serverMetrics.countError(apiError.code);
    for (const [k, v] of Object.entries(apiError.headers ?? {})) reply.header(k, v);
    reply.header("x-request-id", request.id);
    return reply.code(apiError.status).send(errorEnvelope(apiError));
  };

  // Many generated clients send Content-Type: application/json on every request, also on those without
  // a body (DELETE, bodiless POSTs): an empty body is no body. Routes that need one still answer a 400
  // naming it (see route.ts); everything else is Fastify's own parser, with its prototype-poisoning checks.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if ((body as string).trim() === "") return done(null, undefined);
    return parseJson(request, body as string, done);
  });

  answerBeforeBody(app.server);
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  app.decorate("idempotency", services.idempotency);
  app.addHook("onSend", async (request, reply, payload) => {
    await recordIdempotentResponse(request, reply.statusCode, payload);
    return payload;
  });
  app.addHook("onResponse", async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: request.url.split("?")[0],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      "request",
    );
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) =>
    sendError(request, reply, toApiError(error, request)),
  );

  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new ApiError("not_found", `No route for ${request.method} ${request.url.split("?")[0]}`)),
  );

  const authenticate: Authenticate = (request) => {
    const header = request.headers.authorization;
    const key = header?.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : undefined;
    return services.auth.authenticate(key);
  };

  // Traffic for sandboxes (envd, exposed ports) is recognised by one hook before routing; requests for a
  // sandbox on another node go there first.
  const traffic = new TrafficRouter(services.ports.domain);
  forwardToOwners(app, services.forwarder, traffic);
  app.addHook("onRequest", traffic.hook);

  openApiRoutes(app, authenticate);
  consoleRoutes(app, services.ports.domain);
  sandboxRoutes(app, authenticate, services.sandboxes, services.warmPools);
  execRoutes(app, authenticate, services.exec);
  codeRoutes(app, authenticate, services.code);
  desktopRoutes(app, authenticate, services.desktop);
  desktopStreamRoutes(app, authenticate, services.desktopStreams);
  fileRoutes(app, authenticate, services.files, services.maxUploadBytes);
  templateRoutes(app, authenticate, services.templates, services.templateBuilds);
  imageRoutes(app, authenticate, services.images);
  e2bDialect(app, traffic, services);
  portRoutes(app, authenticate, services.sandboxes, services.ports, traffic);
  nullspaceDialect(app, services);
  zwrmDialect(app, services);
  leap0Dialect(app, services);
  openSandboxDialect(app, services);
  vercelDialect(app, services);
  daytonaDialect(app, services);
  adminRoutes(app, authenticate, services.quotas, services.warmPools, services.adminKey);
  snapshotRoutes(app, authenticate, services.snapshots);
  volumeRoutes(app, authenticate, services.volumes);
  terminalRoutes(app, authenticate, services.auth, services.terminals);
  egressRoutes(app, authenticate, services.egressAudit, services.sandboxes);
  eventRoutes(app, authenticate, services.events);
  webhookRoutes(app, authenticate, services.webhooks);
  internalRoutes(app, services);
  nodeRoutes(app, authenticate, services.nodes, services.adminKey);
  metricsRoutes(app, authenticate, services.sandboxes, services.metricsSampler, services.serverMetrics, {
    metricsPublic: services.metricsPublic,
    adminKey: services.adminKey,
  });
  return app;
}
