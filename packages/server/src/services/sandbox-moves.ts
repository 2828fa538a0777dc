import type { FastifyBaseLogger } from "fastify";
import type { NodeClient } from "../cluster/node-client.js";
import type { NodeMembership } from "../cluster/node-membership.js";
import type { NodeRecord, SandboxRecord } from "../domain/index.js";
import { ApiError, notFound } from "../errors.js";
import { MAX_SLOTS } from "../network/addressing.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { SandboxService } from "./sandbox-service.js";

/** What a node asks of another to take a sandbox over (POST /internal/v1/sandboxes/{id}/adopt). */
export interface AdoptRequest {
  /** The node the sandbox lives on now. */
  from: string;
  /** Resume it there (a running sandbox that moves) or keep it paused (a paused one). */
  resume: boolean;
}

/** Seconds a client waits before it retries when no node can take a sandbox right now. */
const RETRY_AFTER_SECONDS = "2";

/** The error an adopt answered with, as the other node sent it (its code and message). */
interface NodeError {
  error?: { code?: string; message?: string };
}

/**
 * Sandboxes that change node, through shared storage (SANDPIT_SHARED_DIR): a paused sandbox's image
 * there lets any node resume it with its memory, processes and files, under the same id.
 * - A paused sandbox whose node is lost, gone or draining resumes on the node the request reached (or,
 *   when that one is draining too, on another ready node).
 * - A draining node moves its sandboxes one by one: a running one is paused (its image goes to shared
 *   storage), taken over and resumed by another node, and this node then frees what it held on the host;
 *   a paused one is only taken over (it stays paused). Clients see the real states of a move: running →
 *   pausing → paused → resuming → running, with the events `sandbox.paused` (reason `move`),
 *   `sandbox.moved` (from, to) and `sandbox.resumed` (reason `move`); calls that arrive during a move
 *   wait for it, and on the node it left answer 503 with Retry-After (the retry reaches its new node).
 * The node that takes a sandbox over re-homes its record in one conditional update (Store.moveSandboxHere),
 * so two nodes never both take it.
 * Sandboxes that mount volumes stay where they are: volumes are node-local.
 */
export class SandboxMoves {
  private drainRound: Promise<void> | undefined;
  /** Host state of sandboxes that moved away, being freed. */
  private readonly releasing = new Map<string, Promise<void>>();
  /** Sandboxes a drain cannot move (volumes), reported once each. */
  private readonly unmovable = new Set<string>();

  constructor(
    private readonly deps: {
      store: Store;
      runtime: SandboxRuntime;
      sandboxes: SandboxService;
      nodeClient: NodeClient;
      membership: NodeMembership;
      log: FastifyBaseLogger;
      /** Whether nodes share storage for paused images; without it nothing moves. */
      sharedStorage: boolean;
    },
  ) {}

  private get self(): string {
    return this.deps.store.nodeId;
  }

  private selfDraining(): boolean {
    return this.deps.membership.node?.state === "draining";
  }

  /**
   * Where a paused sandbox resumes, when not here: undefined to resume it here (it lives here and this
   * node is not draining); the running sandbox when another node (or this one, taking it over) resumed it.
   */
  async resumeElsewhere(record: SandboxRecord): Promise<SandboxRecord | undefined> {
    const draining = this.selfDraining();
    if (record.nodeId === this.self && !(draining && this.deps.sharedStorage)) return undefined;
    if (record.nodeId !== this.self) {
      const owner = await this.deps.store.getNode(record.nodeId);
      if (owner && serves(owner)) {
        throw new ApiError(
          "runtime_unavailable",
          `sandbox ${record.id} lives on node ${record.nodeId}, which serves it; retry`,
          { node: record.nodeId },
          { "retry-after": "1" },
        );
      }
      if (!this.deps.sharedStorage) {
        throw new ApiError(
          "runtime_unavailable",
          `sandbox ${record.id} was paused on node ${record.nodeId}, which is ${owner?.state ?? "gone"}, and ` +
            "without shared storage (SANDPIT_SHARED_DIR) no other node can resume it",
          { node: record.nodeId },
        );
      }
    }
    if (!draining) return this.adopt(record.id, { from: record.nodeId, resume: true });
    const target = await this.pickTarget([this.self, record.nodeId]);
    await this.askToAdopt(target, record.id, { from: record.nodeId, resume: true });
    return (await this.deps.store.getSandbox(record.id))!;
  }

  /**
   * Takes a paused sandbox over from node `from` (which must be draining, lost or gone) and, with
   * `resume`, resumes it here from its image on shared storage. Refused with a clear error when this
   * node cannot run it (no image, a layer missing here, volumes) or another node took it first.
   */
  async adopt(id: string, request: AdoptRequest): Promise<SandboxRecord> {
    // It left this node a moment ago and comes back: what it held here goes first.
    await this.releasing.get(id);
    const record = await this.deps.store.getSandbox(id);
    if (!record) throw notFound("sandbox", id);
    if (record.nodeId === this.self && record.status !== "paused") return record;
    this.assertMovable(record);
    const missing = await this.deps.runtime.missingLayers(id);
    if (missing === undefined) {
      throw new ApiError("invalid_state", `sandbox ${id} has no paused image on shared storage`, {
        status: record.status,
      });
    }
    if (missing.length > 0) {
      throw new ApiError(
        "runtime_unavailable",
        `node ${this.self} lacks layers sandbox ${id} runs on: ${missing.join(", ")}`,
        { node: this.self, missingLayers: missing },
      );
    }
    const moved =
      record.nodeId === this.self ? record : await this.deps.store.moveSandboxHere(id, request.from, MAX_SLOTS - 1);
    if (!moved) {
      const current = await this.deps.store.getSandbox(id);
      throw new ApiError(
        "conflict",
        `sandbox ${id} cannot move from node ${request.from}: it is ${current?.status} on node ${current?.nodeId}`,
        { status: current?.status, node: current?.nodeId },
      );
    }
    this.deps.log.info({ sandboxId: id, from: request.from, resume: request.resume }, "sandbox moved here");
    if (!request.resume) return moved;
    return this.deps.sandboxes.trackMove(id, this.deps.sandboxes.resumeMovedHere(id, "move"));
  }

  /** One round of draining, when this node is draining and none is under way (called every tick). */
  drainIfDraining(): void {
    if (this.drainRound || !this.deps.sharedStorage || !this.selfDraining()) return;
    this.drainRound = this.drain()
      .catch((e) => this.deps.log.error({ err: e }, "drain round failed"))
      .finally(() => {
        this.drainRound = undefined;
      });
  }

  /** Waits for the drain round under way and the freeing of moved sandboxes (shutdown). */
  async idle(): Promise<void> {
    await this.drainRound;
    await Promise.all(this.releasing.values());
  }

  private async drain(): Promise<void> {
    for (const record of await this.deps.store.sandboxesInStatus(["running", "paused"])) {
      // Undrained meanwhile: the rest stay. Asked of the database, not of this node's view of itself (renewed
      // with its lease): a sandbox placed here right after an undrain must not be moved by a stale view.
      if (!this.selfDraining() || (await this.deps.store.getNode(this.self))?.state !== "draining") return;
      if (record.volumes.length > 0) {
        if (!this.unmovable.has(record.id)) {
          this.unmovable.add(record.id);
          this.deps.log.warn({ sandboxId: record.id }, "drain: a sandbox that mounts volumes stays on its node");
        }
        continue;
      }
      await this.moveOut(record).catch((e) =>
        this.deps.log.warn({ err: e, sandboxId: record.id }, "drain: move failed; retried next round"),
      );
    }
  }

  /**
   * Moves one of this node's sandboxes to another node (see the class comment). Returns once it runs
   * there; what it held on this host is freed in the background (`releasing`): on a host that several
   * nodes share, runsc's removal of the stopped container waits ~5 s for the cgroup the moved sandbox
   * now uses again.
   */
  private async moveOut(record: SandboxRecord): Promise<void> {
    const { id } = record;
    const target = await this.pickTarget([this.self]);
    const started = Date.now();
    const move = async () => {
      const wasRunning = record.status === "running";
      if (wasRunning) await this.deps.sandboxes.pauseById(id, "move");
      const paused = Date.now();
      let failure: unknown;
      await this.askToAdopt(target, id, { from: this.self, resume: wasRunning }).catch((e: unknown) => {
        failure = e;
      });
      const now = await this.deps.store.getSandbox(id);
      if (now && now.nodeId !== this.self) {
        this.deps.log.info(
          { sandboxId: id, to: now.nodeId, ms: Date.now() - started, pauseMs: paused - started },
          "sandbox moved away",
        );
        const release = this.deps.sandboxes
          .releaseMovedAway(id, record.netIndex)
          .catch((e) => this.deps.log.error({ err: e, sandboxId: id }, "freeing a moved sandbox failed"))
          .finally(() => this.releasing.delete(id));
        this.releasing.set(id, release);
        return;
      }
      // Still here: it runs on where it was.
      if (wasRunning && now?.status === "paused") await this.deps.sandboxes.resumeMovedHere(id, "move_failed");
      throw failure;
    };
    await this.deps.sandboxes.trackMove(id, move());
  }

  /** A ready node with a live lease, other than `exclude`, to move a sandbox to (at random: spread). */
  private async pickTarget(exclude: string[]): Promise<NodeRecord> {
    const candidates = (await this.deps.store.listNodes()).filter((n) => serves(n) && !exclude.includes(n.id));
    const target = candidates[Math.floor(Math.random() * candidates.length)];
    if (!target) {
      throw new ApiError("runtime_unavailable", "no other ready node can take the sandbox now; retry", undefined, {
        "retry-after": RETRY_AFTER_SECONDS,
      });
    }
    return target;
  }

  private async askToAdopt(target: NodeRecord, id: string, request: AdoptRequest): Promise<void> {
    const answer = await this.deps.nodeClient.call<NodeError>(
      target,
      "POST",
      `/internal/v1/sandboxes/${encodeURIComponent(id)}/adopt`,
      request,
    );
    if (answer.status >= 300) {
      throw new ApiError(
        "runtime_unavailable",
        `node ${target.id} could not take sandbox ${id} over: ${answer.body.error?.message ?? answer.status}`,
        { node: target.id, code: answer.body.error?.code },
        { "retry-after": RETRY_AFTER_SECONDS },
      );
    }
  }

  private assertMovable(record: SandboxRecord): void {
    if (record.volumes.length === 0) return;
    throw new ApiError(
      "invalid_state",
      `sandbox ${record.id} mounts volumes, which live on node ${record.nodeId}: it resumes only there`,
      { node: record.nodeId },
    );
  }
}

/** A node that takes and serves sandboxes: ready, with a lease that has not run out. */
function serves(node: NodeRecord): boolean {
  return node.state === "ready" && node.leaseExpiresAt > Date.now();
}
