import type { FastifyInstance } from "fastify";
import type { NodeClient } from "../cluster/node-client.js";
import type { NodeMembership } from "../cluster/node-membership.js";
import { ApiError } from "../errors.js";

/**
 * The internal API under `/internal/v1`: what nodes of a cluster ask of each other. Every request must be
 * signed by a node (NodeClient): clients, whatever key they hold, get 401. Not in the OpenAPI document.
 */
export function internalRoutes(
  app: FastifyInstance,
  services: { nodeClient: NodeClient; membership: NodeMembership },
): void {
  app.register(
    async (internal) => {
      internal.addHook("onRequest", async (request) => {
        const caller = services.nodeClient.verify(request.headers, request.method, request.url);
        if (!caller || caller === "forged") {
          throw new ApiError("unauthorized", "the internal API answers only nodes of this cluster");
        }
      });

      /** This node as registered: lets a node check that another one answers and who it is. */
      internal.get("/node", async () => ({ node: services.membership.node ?? null }));
    },
    { prefix: "/internal/v1" },
  );
}
