import type http from "node:http";
import { listPortsResponseSchema, networkPolicySchema, sandboxSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";
import { proxyHttp, proxyUpgrade } from "../http/proxy.js";
import type { SandboxPortTarget, TrafficRouter } from "../http/traffic-router.js";
import { onUpgrade, rejectUpgrade } from "../http/upgrades.js";
import {
  type PortService,
  type PortTarget,
  splitTokenPath,
  TRAFFIC_TOKEN_HEADER,
  TRAFFIC_TOKEN_QUERY,
} from "../services/port-service.js";
import type { SandboxService } from "../services/sandbox-service.js";
import { toSandbox } from "../services/sandbox-service.js";
import { type Authenticate, requestBaseUrl, route } from "./route.js";

const PATH_PATTERN = /^\/v1\/sandboxes\/(sbx_[a-z2-7]{20})\/ports\/(\d{1,5})(\/[^?]*)?(\?.*)?$/;

interface ProxiedRequest {
  sandboxId: string;
  port: number;
  /** Path and query to send upstream (the traffic token removed). */
  upstreamPath: string;
  token: string | undefined;
}

/**
 * Finds out whether a request is port traffic, by the port its host name or headers name (`byHost`) or by
 * path, and what it targets.
 */
function parseProxied(req: http.IncomingMessage, byHost: SandboxPortTarget | undefined): ProxiedRequest | undefined {
  const url = new URL(byHost?.path ?? req.url ?? "/", "http://x");
  let token = req.headers[TRAFFIC_TOKEN_HEADER] as string | undefined;
  if (url.searchParams.has(TRAFFIC_TOKEN_QUERY)) {
    token ??= url.searchParams.get(TRAFFIC_TOKEN_QUERY) ?? undefined;
    url.searchParams.delete(TRAFFIC_TOKEN_QUERY);
  }
  const search = url.searchParams.size ? `?${url.searchParams.toString()}` : "";
  let target: { sandboxId: string; port: number; path: string };
  if (byHost) target = { ...byHost, path: url.pathname };
  else {
    const m = PATH_PATTERN.exec(req.url ?? "");
    if (!m) return undefined;
    target = { sandboxId: m[1]!, port: Number(m[2]), path: new URL(m[3] ?? "/", "http://x").pathname };
  }
  const inPath = splitTokenPath(target.path);
  token ??= inPath.token;
  return { sandboxId: target.sandboxId, port: target.port, upstreamPath: `${inPath.path}${search}`, token };
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
  traffic: TrafficRouter,
) {
  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/ports",
      sandboxParam: "id",
      summary: "Exposed ports and their URLs",
      tags: ["network"],
      responses: { 200: { description: "Ports", schema: listPortsResponseSchema } },
    },
    async ({ org, params, request }) => {
      const record = await sandboxes.get(org, params.id!);
      return {
        ports: ports.urls(requestBaseUrl(request), record.id, record.ports),
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
      sandboxParam: "id",
      summary: "Replace the egress policy of a running sandbox (applied at once, atomically)",
      tags: ["network"],
      body: networkPolicySchema,
      responses: { 200: { description: "The sandbox", schema: sandboxSchema } },
    },
    async ({ org, params, body }) => toSandbox(await sandboxes.setNetworkPolicy(org, params.id!, body)),
  );

  // Port traffic is recognised before routing, so that any method, path and body passes unparsed.
  const proxy = async (request: FastifyRequest, reply: FastifyReply, proxied: ProxiedRequest) => {
    let target: PortTarget;
    try {
      target = await ports.resolve(proxied.sandboxId, proxied.port, proxied.token);
    } catch (e) {
      if (e instanceof ApiError) reply.header("x-request-id", request.id);
      throw e;
    }
    reply.hijack();
    proxyHttp(request.raw, reply.raw, target, proxied.upstreamPath);
  };
  traffic.onOtherPorts((request, reply, byHost) => proxy(request, reply, parseProxied(request.raw, byHost)!));
  traffic.onPath(
    (url) => PATH_PATTERN.test(url),
    (req) => PATH_PATTERN.exec(req.url ?? "")?.[1],
    (request, reply) => proxy(request, reply, parseProxied(request.raw, undefined)!),
  );

  onUpgrade(app, {
    claims: (req) => parseProxied(req, traffic.sandboxPortOf(req)) !== undefined,
    sandboxOf: (req) => parseProxied(req, traffic.sandboxPortOf(req))?.sandboxId,
    handle: (req, socket, head) => {
      const proxied = parseProxied(req, traffic.sandboxPortOf(req))!;
      ports.resolve(proxied.sandboxId, proxied.port, proxied.token).then(
        (target) => proxyUpgrade(req, socket, head, target, proxied.upstreamPath),
        (e: unknown) => rejectUpgrade(socket, e),
      );
    },
  });
}
