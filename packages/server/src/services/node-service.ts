import type { ClusterNode } from "@sandpit/contract";
import type { NodeRecord, NodeUsage } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { iso } from "../lib/clock.js";
import type { Store } from "../store/store.js";

/** A node with the sandboxes on it (what `GET /v1/nodes` and the per-node metrics show). */
export interface NodeWithLoad {
  node: NodeRecord;
  load: Omit<NodeUsage, "nodeId">;
}

const NO_LOAD: Omit<NodeUsage, "nodeId"> = { sandboxes: {}, vcpus: 0, memoryMb: 0 };

export function toClusterNode({ node, load }: NodeWithLoad): ClusterNode {
  return {
    id: node.id,
    url: node.url,
    state: node.state,
    epoch: node.epoch,
    capacity: node.capacity,
    load: { sandboxes: load.sandboxes, vcpus: load.vcpus, memoryMb: load.memoryMb },
    labels: node.labels,
    version: node.version,
    startedAt: iso(node.startedAt)!,
    heartbeatAt: iso(node.heartbeatAt)!,
    leaseExpiresAt: iso(node.leaseExpiresAt)!,
  };
}

/**
 * The nodes of the cluster as operators see them, and draining: a drained node takes no new sandboxes
 * (placement skips it) until it is undrained. Moving its sandboxes away is the move service's.
 */
export class NodeService {
  constructor(private readonly store: Store) {}

  async list(): Promise<NodeWithLoad[]> {
    const [nodes, loads] = await Promise.all([this.store.listNodes(), this.store.nodeUsage()]);
    return nodes.map((node) => {
      const load = loads.find((l) => l.nodeId === node.id);
      return { node, load: load ? { sandboxes: load.sandboxes, vcpus: load.vcpus, memoryMb: load.memoryMb } : NO_LOAD };
    });
  }

  async get(id: string): Promise<NodeWithLoad> {
    const found = (await this.list()).find((n) => n.node.id === id);
    if (!found) throw new ApiError("not_found", `node ${id} not found`);
    return found;
  }

  /** Stops placing sandboxes on the node (idempotent); a lost node cannot be drained. */
  drain(id: string): Promise<NodeWithLoad> {
    return this.changeState(id, "draining", ["ready", "draining"]);
  }

  /** Lets the node take new sandboxes again (idempotent on a ready node). */
  undrain(id: string): Promise<NodeWithLoad> {
    return this.changeState(id, "ready", ["draining", "ready"]);
  }

  private async changeState(id: string, state: NodeRecord["state"], from: NodeRecord["state"][]) {
    // Conditional: a node the cluster declares lost meanwhile stays lost.
    if (!(await this.store.setNodeState(id, state, from))) {
      const node = (await this.get(id)).node;
      throw new ApiError("invalid_state", `node ${id} is ${node.state}: it must be ${from.join(" or ")}`, {
        state: node.state,
        allowed: from,
      });
    }
    return this.get(id);
  }
}
