import { statfs } from "node:fs/promises";
import os from "node:os";
import type { FastifyBaseLogger } from "fastify";
import type { ClusterConfig } from "../config.js";
import type { NodeCapacity, NodeRecord } from "../domain/index.js";
import { MAX_SLOTS } from "../network/addressing.js";
import type { Store } from "../store/store.js";

/** What the host offers, measured at start; the configuration overrides any part of it. */
export async function measuredCapacity(dataDir: string, overrides: Partial<NodeCapacity>): Promise<NodeCapacity> {
  const disk = await statfs(dataDir);
  return {
    vcpus: os.availableParallelism(),
    memoryMb: Math.floor(os.totalmem() / 1024 / 1024),
    diskMb: Math.floor((disk.blocks * disk.bsize) / 1024 / 1024),
    sandboxes: MAX_SLOTS,
    ...overrides,
  };
}

/**
 * This server's membership of the cluster: it registers the node (a new epoch, which the store's writes
 * about this node's sandboxes carry from then on: `Store.fence`), renews the lease every third of its time
 * to live, and says when the lease was lost to the cluster (`onFenced`: the node was declared lost or
 * another process registered as it) — from then on its writes about sandboxes are refused and it must not
 * serve them until it registers again (`rejoin`).
 */
export class NodeMembership {
  private current: NodeRecord | undefined;
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;
  private fencedNow = false;

  constructor(
    private readonly store: Store,
    private readonly config: ClusterConfig & { dataDir: string; version: string },
    private readonly log: FastifyBaseLogger,
  ) {}

  /**
   * Called when the lease is found lost, until it resolves (a failure is retried at the next renewal);
   * it must end with `rejoin`. The default rejoins at once.
   */
  onFenced: (lost: NodeRecord | undefined) => Promise<void> = async () => {
    await this.rejoin();
  };

  /** Between finding the lease lost and registering again: the node's background work waits. */
  get fenced(): boolean {
    return this.fencedNow;
  }

  get nodeId(): string {
    return this.store.nodeId;
  }

  /** The node as last registered or renewed (undefined before `join`). */
  get node(): NodeRecord | undefined {
    return this.current;
  }

  /** Registers with the URL the other nodes reach this one at, and keeps the lease. */
  async join(listenUrl: string): Promise<NodeRecord> {
    const node = await this.register(this.config.nodeUrl ?? listenUrl);
    this.timer = setInterval(() => void this.renew(), Math.max(250, Math.floor(this.config.leaseTtlMs / 3)));
    this.timer.unref();
    return node;
  }

  async register(url: string): Promise<NodeRecord> {
    this.current = await this.store.registerNode(
      {
        id: this.nodeId,
        url,
        capacity: await measuredCapacity(this.config.dataDir, this.config.capacity),
        labels: this.config.labels,
        version: this.config.version,
        startedAt: Date.now(),
      },
      this.config.leaseTtlMs,
    );
    this.store.fence(this.current.epoch);
    this.fencedNow = false;
    this.log.info({ node: this.nodeId, epoch: this.current.epoch, url }, "node registered");
    return this.current;
  }

  /** Registers again at the same URL, after the lease was lost: a new epoch. */
  rejoin(): Promise<NodeRecord> {
    return this.register(this.current?.url ?? "");
  }

  private async renew(): Promise<void> {
    if (this.renewing || !this.current) return;
    this.renewing = true;
    try {
      const renewed = await this.store.renewNodeLease(this.nodeId, this.current.epoch, this.config.leaseTtlMs);
      if (renewed) {
        this.current = renewed;
        return;
      }
      this.fencedNow = true;
      const now = await this.store.getNode(this.nodeId);
      this.log.error(
        { node: this.nodeId, epoch: this.current.epoch, state: now?.state, currentEpoch: now?.epoch },
        "node lease lost: fenced",
      );
      await this.onFenced(now);
    } catch (e) {
      // The database is unreachable: the lease runs out on its own if this lasts; keep trying.
      this.log.warn({ err: e, node: this.nodeId }, "node lease renewal failed");
    } finally {
      this.renewing = false;
    }
  }

  leave(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
