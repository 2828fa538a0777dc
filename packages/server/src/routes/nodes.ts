import { listNodesResponseSchema, nodeSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { type NodeService, toClusterNode } from "../services/node-service.js";
import { requireAdminKey } from "./admin.js";
import { type Authenticate, route } from "./route.js";

/** The cluster's nodes, for operators (admin key): list, drain, undrain. */
export function nodeRoutes(app: FastifyInstance, authenticate: Authenticate, nodes: NodeService, adminKey?: string) {
  const adminOnly = { public: true, tags: ["nodes"] };
  const errors = {
    401: { description: "Not the admin key" },
    403: { description: "The server has no admin key (SANDPIT_ADMIN_KEY)" },
  };

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/nodes",
      summary: "The nodes of the cluster with their state, capacity and load (admin key)",
      ...adminOnly,
      responses: { 200: { description: "Nodes by id", schema: listNodesResponseSchema }, ...errors },
    },
    async ({ request }) => {
      requireAdminKey(request, adminKey, "the nodes API");
      return { nodes: (await nodes.list()).map(toClusterNode) };
    },
  );

  for (const [action, summary] of [
    ["drain", "Stop placing new sandboxes on a node (admin key); idempotent"],
    ["undrain", "Let a drained node take new sandboxes again (admin key); idempotent"],
  ] as const) {
    route(
      app,
      authenticate,
      {
        method: "POST",
        url: `/v1/nodes/{id}/${action}`,
        summary,
        ...adminOnly,
        responses: {
          200: { description: "The node", schema: nodeSchema },
          404: { description: "No such node" },
          409: { description: "The node is lost" },
          ...errors,
        },
      },
      async ({ request, params }) => {
        requireAdminKey(request, adminKey, "the nodes API");
        const id = params.id!;
        return toClusterNode(await (action === "drain" ? nodes.drain(id) : nodes.undrain(id)));
      },
    );
  }
}
