import type { FastifyInstance, FastifyRequest } from "fastify";
import { ANSWERED_BY_HEADER, type NodeForwarder } from "../cluster/node-forwarder.js";
import type { TrafficRouter } from "./traffic-router.js";
import { forwardUpgrades, rejectUpgrade } from "./upgrades.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route parameter that holds a sandbox id: the node the sandbox lives on answers the route. */
    sandboxParam?: string;
    /** For routes that name a sandbox another way (Vercel's sandbox names): its id, when there is one. */
    sandboxOf?: (request: FastifyRequest) => Promise<string | undefined>;
  }
}

/**
 * Route options of a route whose parameter `param` names a sandbox, for Fastify's shorthand routes:
 * `app.get("/v1/sandbox/:id", forSandbox("id"), handler)`. Requests to it that reach another node are
 * passed to the sandbox's node.
 */
export const forSandbox = (param: string) => ({ config: { sandboxParam: param } });

/**
 * Route options of a route that names a sandbox some other way than by its id: `resolve` finds the id
 * (it may authenticate the caller; its errors are the route's).
 */
export const forSandboxResolvedBy = (resolve: (request: FastifyRequest) => Promise<string | undefined>) => ({
  config: { sandboxOf: resolve },
});

/** The sandbox a request is for: sandbox traffic (envd, ports) by host or path, or as its route names it. */
async function sandboxOf(request: FastifyRequest, traffic: TrafficRouter): Promise<string | undefined> {
  const byTraffic = traffic.sandboxOf(request.raw);
  if (byTraffic !== undefined) return byTraffic;
  const { sandboxParam, sandboxOf: resolve } = request.routeOptions.config;
  if (sandboxParam) return (request.params as Record<string, string | undefined>)[sandboxParam];
  return resolve?.(request);
}

/**
 * Makes this node answer every request for a sandbox, wherever it lives: requests (and WebSocket
 * upgrades) for a sandbox on another node go to that node before routing, bodies unparsed, and come
 * back streamed; every response names the node that answered it. Must be installed before the traffic
 * router's hook, which would otherwise answer sandbox traffic here.
 */
export function forwardToOwners(app: FastifyInstance, forwarder: NodeForwarder, traffic: TrafficRouter): void {
  app.addHook("onRequest", async (request, reply) => {
    reply.raw.setHeader(ANSWERED_BY_HEADER, forwarder.nodeId);
    const owner = await forwarder.destination(request.raw, await sandboxOf(request, traffic));
    if (!owner) return;
    await forwarder.forwardHttp(request.raw, reply.raw, owner, request.id);
    reply.hijack();
  });
  forwardUpgrades(app, async (req, sandboxId, socket, head) => {
    const owner = await forwarder.destination(req, sandboxId);
    if (!owner) return false;
    forwarder.forwardUpgrade(req, socket, head, owner, (e) => rejectUpgrade(socket, e));
    return true;
  });
}
