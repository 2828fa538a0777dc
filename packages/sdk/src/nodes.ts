import { type ClusterNode, listNodesResponseSchema, type NodeState, nodeSchema } from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";

export type { ClusterNode, NodeState };

/**
 * The nodes of a Sandpit cluster, for operators: every call needs the server's admin key
 * (SANDPIT_ADMIN_KEY) as `apiKey`.
 *
 * @example
 * ```ts
 * const nodes = await Nodes.list({ apiKey: process.env.SANDPIT_ADMIN_KEY });
 * await Nodes.drain("node-2", { apiKey: process.env.SANDPIT_ADMIN_KEY });
 * ```
 */
export class Nodes {
  private constructor() {}

  /** Every node with its state (ready, draining, lost), capacity, load, version and lease times. */
  static async list(opts?: ConnectionOptions): Promise<ClusterNode[]> {
    const { nodes } = await client(opts).json(listNodesResponseSchema, "/nodes");
    return nodes;
  }

  /** Stops placing new sandboxes on the node (idempotent); a lost node answers a ConflictError. */
  static async drain(id: string, opts?: ConnectionOptions): Promise<ClusterNode> {
    return client(opts).json(nodeSchema, `/nodes/${encodeURIComponent(id)}/drain`, { method: "POST" });
  }

  /** Lets a drained node take new sandboxes again (idempotent). */
  static async undrain(id: string, opts?: ConnectionOptions): Promise<ClusterNode> {
    return client(opts).json(nodeSchema, `/nodes/${encodeURIComponent(id)}/undrain`, { method: "POST" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
