import type { FastifyInstance, FastifyRequest } from "fastify";
import { ANSWERED_BY_HEADER, type NodeForwarder } from "../cluster/node-forwarder.js";
import type { TrafficRouter } from "./traffic-router.js";
import { forwardUpgrades, rejectUpgrade } from "./upgrades.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route parameter that holds a sandbox id: the node the sandbox lives on answers the route. */
    sandboxParam?: string;
  }
}

/**
 * Route options of a route whose parameter `param` names a sandbox, for Fastify's shorthand routes:
 * `app.get("/v1/sandbox/:id", forSandbox("id"), handler)`. Requests to it that reach another node are
 * passed to the sandbox's node.
 */
export const forSandbox = (param: string) => ({ config: { sandboxParam: param } });

/** The sandbox a request is for: sandbox traffic (envd, ports) by host or path, or a route's sandbox param. */
function sandboxOf(request: FastifyRequest, traffic: TrafficRouter): string | undefined {
  const byTraffic = traffic.sandboxOf(request.raw);
  if (byTraffic !== undefined) return byTraffic;
  const param = request.routeOptions.config.sandboxParam;
  return param ? (request.params as Record<string, string | undefined>)[param] : undefined;
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
    const owner = await forwarder.destination(request.raw, sandboxOf(request, traffic));
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
