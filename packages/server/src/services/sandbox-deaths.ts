import type { FastifyBaseLogger } from "fastify";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { AgentPool } from "./agent-pool.js";

/**
 * Marks running sandboxes that died as `error`, with the runtime's reason. Lifecycle calls notice deaths
 * (a failed pause, an unreachable agent) as the supervisor's tick does, so both share this.
 */
export class SandboxDeaths {
  private readonly dying = new Map<string, Promise<SandboxRecord | undefined>>();

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime,
    private readonly agents: AgentPool,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Whether a sandbox's death is being recorded right now. */
  isMarking(id: string): boolean {
    return this.dying.has(id);
  }

  /**
   * Records that a running sandbox died, with the reason, once it freed what it held on the host — so
   * a client that sees `error` never finds its leftovers. Concurrent callers share one run. A death that
   * is not an OOM is recorded as `ifCrashed`: what the caller saw it die of (a failed pause), else `crashed`.
   */
  markDead(id: string, ifCrashed: "crashed" | "pause_failed" = "crashed"): Promise<SandboxRecord | undefined> {
    const inFlight = this.dying.get(id);
    if (inFlight) return inFlight;
    const run = (async () => {
      const current = await this.store.getSandbox(id);
      // Running on another node (it moved there): not this node's to judge.
      if (current?.status !== "running" || current.nodeId !== this.store.nodeId) return current;
      const death = await this.runtime.deathReason(id);
      const reason = death === "crashed" ? ifCrashed : death;
      this.log.warn({ sandboxId: id, reason }, "sandbox died");
      this.agents.forget(id);
      await this.runtime.destroy(id, current.netIndex).catch((e) => this.log.error({ err: e }, "cleanup failed"));
      await this.store.markRunningCommandsLost(id);
      const record = await this.store.updateSandbox(id, { status: "error", reason, netIndex: null }, ["running"]);
      return record ?? this.store.getSandbox(id);
    })().finally(() => this.dying.delete(id));
    this.dying.set(id, run);
    return run;
  }
}
