import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { listPortsResponseSchema, networkPolicySchema, sandboxSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import {
  type PortService,
  type PortTarget,
  TRAFFIC_TOKEN_HEADER,
  TRAFFIC_TOKEN_QUERY,
} from "../services/port-service.js";
import type { SandboxService } from "../services/sandbox-service.js";
import { toSandbox } from "../services/sandbox-service.js";
import { type Authenticate, route } from "./route.js";
import { onUpgrade, rejectUpgrade } from "./upgrades.js";

const PATH_PATTERN = /^\/v1\/sandboxes\/(sbx_[a-z2-7]{20})\/ports\/(\d{1,5})(\/[^?]*)?(\?.*)?$/;
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  TRAFFIC_TOKEN_HEADER,
]);
const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });

interface ProxiedRequest {
  sandboxId: string;
  port: number;
  /** Path and query to send upstream (the traffic token removed). */
  upstreamPath: string;
  token: string | undefined;
}

/** Finds out whether a request is port traffic, by path or by host name, and what it targets. */
function parseProxied(ports: PortService, req: http.IncomingMessage): ProxiedRequest | undefined {
  const url = new URL(req.url ?? "/", "http://x");
  let token = req.headers[TRAFFIC_TOKEN_HEADER] as string | undefined;
  if (url.searchParams.has(TRAFFIC_TOKEN_QUERY)) {
    token ??= url.searchParams.get(TRAFFIC_TOKEN_QUERY) ?? undefined;
    url.searchParams.delete(TRAFFIC_TOKEN_QUERY);
  }
  const search = url.searchParams.size ? `?${url.searchParams.toString()}` : "";
  const byHost = ports.parseHost(req.headers.host);
  if (byHost) return { ...byHost, upstreamPath: `${url.pathname}${search}`, token };
  const m = PATH_PATTERN.exec(req.url ?? "");
  if (!m) return undefined;
  const rest = new URL(m[3] ?? "/", "http://x").pathname;
  return { sandboxId: m[1]!, port: Number(m[2]), upstreamPath: `${rest}${search}`, token };
}

function forwardHeaders(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
  headers["x-forwarded-for"] = req.socket.remoteAddress ?? "";
  headers["x-forwarded-host"] = req.headers.host ?? "";
  return headers;
}

function sendError(res: http.ServerResponse, e: unknown) {
  const error = e instanceof ApiError ? e : new ApiError("upstream_unavailable", `upstream failed: ${String(e)}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(error.status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: error.code, message: error.message } }));
}

/** Streams one HTTP exchange to the sandbox's port and back (bodies are never buffered). */
export function proxyHttp(req: http.IncomingMessage, res: http.ServerResponse, target: PortTarget, path: string) {
  const upstream = http.request(
    {
      host: target.host,
      port: target.port,
      method: req.method,
      path,
      headers: forwardHeaders(req),
      agent: upstreamAgent,
    },
    (up) => {
      const headers: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
      res.writeHead(up.statusCode ?? 502, headers);
      res.flushHeaders();
      up.pipe(res);
    },
  );
  upstream.setNoDelay(true);
  upstream.on("error", (e) =>
    sendError(res, new ApiError("upstream_unavailable", `nothing answers on port ${target.port}: ${e.message}`)),
  );
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/** Tunnels a WebSocket (or any Upgrade) to the sandbox's port. */
function proxyUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, target: PortTarget, path: string) {
  const upstream = net.connect(target.port, target.host, () => {
    const lines = [`${req.method} ${path} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (name.toLowerCase() === TRAFFIC_TOKEN_HEADER) continue;
      lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.setNoDelay(true);
  const close = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on("error", close);
  socket.on("error", close);
  upstream.on("close", close);
  socket.on("close", close);
}

/**
 * Exposed ports: the list of URLs (API key), the proxy itself (traffic token) by path
 * `/v1/sandboxes/{id}/ports/{port}/…` and by host `{port}-{id}.{SANDPIT_DOMAIN}`, HTTP and WebSocket,
 * and the network policy of a running sandbox.
 */
export function portRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  sandboxes: SandboxService,
  ports: PortService,
) {
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/ports",
      summary: "Exposed ports and their URLs",
      tags: ["network"],
      responses: { 200: { description: "Ports", schema: listPortsResponseSchema } },
    },
    async ({ org, params, request }) => {
      const record = await sandboxes.get(org, params.id!);
      const base = `${request.protocol}://${request.headers.host ?? request.hostname}`;
      return {
        ports: ports.urls(base, record.id, record.ports),
        public: record.publicPorts,
        trafficTokenHeader: TRAFFIC_TOKEN_HEADER,
      };
    },
  );

  route(
    app,
    authenticate,
    {
      method: "PUT",
      url: "/v1/sandboxes/{id}/network-policy",
      summary: "Replace the egress policy of a running sandbox (applied at once, atomically)",
      tags: ["network"],
      body: networkPolicySchema,
      responses: { 200: { description: "The sandbox", schema: sandboxSchema } },
    },
    async ({ org, params, body }) => toSandbox(await sandboxes.setNetworkPolicy(org, params.id!, body)),
  );

  // Port traffic is recognised before routing, so that any method, path and body passes unparsed.
  app.addHook("onRequest", async (request: FastifyRequest, reply) => {
    const proxied = parseProxied(ports, request.raw);
    if (!proxied) return;
    let target: PortTarget;
    try {
      target = await ports.resolve(proxied.sandboxId, proxied.port, proxied.token);
    } catch (e) {
      if (e instanceof ApiError) reply.header("x-request-id", request.id);
      throw e;
    }
    reply.hijack();
    proxyHttp(request.raw, reply.raw, target, proxied.upstreamPath);
  });

  onUpgrade(
    app,
    (req) => parseProxied(ports, req) !== undefined,
    (req, socket, head) => {
      const proxied = parseProxied(ports, req)!;
      ports.resolve(proxied.sandboxId, proxied.port, proxied.token).then(
        (target) => proxyUpgrade(req, socket, head, target, proxied.upstreamPath),
        (e: unknown) => rejectUpgrade(socket, e),
      );
    },
  );
}
