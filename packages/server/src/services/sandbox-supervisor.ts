import type { FastifyBaseLogger } from "fastify";
import type { SandboxRecord } from "../domain/sandbox.js";
import { now } from "../lib/clock.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { AgentPool } from "./agent-pool.js";
import type { SandboxDeaths } from "./sandbox-deaths.js";
import { egressTarget, expiryFrom, isHibernated, LIVE, type SandboxService } from "./sandbox-service.js";

/** Checkpoints of idle sandboxes run at most this many at a time (see `hibernateSoon`). */
const HIBERNATIONS_AT_ONCE = 2;
/** A sandbox whose hibernation failed (e.g. refused: a deleted file in use) is not tried again for this long. */
const HIBERNATION_RETRY_MS = 60_000;

/**
 * What runs beside the API: expiries, idle timeouts and deaths every tick, and bringing the host and the
 * database into agreement when the server starts.
 */
export class SandboxSupervisor {
  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime,
    private readonly sandboxes: SandboxService,
    private readonly deaths: SandboxDeaths,
    private readonly agents: AgentPool,
    private readonly log: FastifyBaseLogger,
    private readonly opts: {
      hibernateAfterMs: number | null;
      /** Idle sandboxes beyond this many are hibernated early, the longest idle first (see `dueForHibernation`). */
      liveIdleMax?: number;
      /** How long a sandbox must have been quiet before the live-idle limit may hibernate it. */
      hibernateUnderPressureAfterMs?: number;
      /** Whether a sandbox did work of its own (CPU, runnable threads, network) after a time: working is not idle. */
      workedSince?: (sandboxId: string, sinceMs: number) => boolean;
    } = { hibernateAfterMs: null },
  ) {}

  /**
   * Activity is noted in memory only: after a (re)start, a sandbox counts as active from then on, not
   * as idle since it started — a restart does not hibernate every sandbox at once.
   */
  private readonly startedAt = now();
  private readonly hibernating = new Set<string>();
  /** When a sandbox whose hibernation failed may be tried again. */
  private readonly hibernationRetryAt = new Map<string, number>();

  /** Expiry and liveness: runs every second. */
  async tick(): Promise<void> {
    await this.failAbandonedCreates();
    const [running, paused] = await Promise.all([
      this.store.sandboxesInStatus(["running"]),
      this.store.sandboxesInStatus(["paused"]),
    ]);
    const t = now();
    for (const [id, at] of this.hibernationRetryAt) if (at <= t) this.hibernationRetryAt.delete(id);
    const idleSince = new Map(
      running.map((s) => [s.id, this.sandboxes.lastActivityOf(s.id) ?? Math.max(s.startedAt ?? t, this.startedAt)]),
    );
    const due = this.dueForHibernation(running, idleSince, t);
    for (const id of due) this.hibernateSoon(id);
    const dueIds = new Set(due);
    await Promise.all([
      ...paused.filter((s) => isHibernated(s) && s.expiresAt !== null && s.expiresAt <= t).map((s) => this.expire(s)),
      ...running.map(async (s) => {
        if (s.expiresAt !== null && s.expiresAt <= t) {
          await this.expire(s);
        } else if (s.idleTimeoutMs !== null && idleSince.get(s.id)! + s.idleTimeoutMs <= t) {
          await this.sandboxes.pauseById(s.id, "idle").catch(() => undefined);
        } else if (
          !dueIds.has(s.id) &&
          !this.sandboxes.isDestroying(s.id) &&
          !this.deaths.isMarking(s.id) &&
          !(await this.runtime.alive(s.id))
        ) {
          await this.deaths.markDead(s.id);
        }
      }),
    ]);
  }

  /**
   * The running sandboxes to hibernate, in order: those quiet for the whole quiet period, then, while more
   * than `liveIdleMax` idle sandboxes are live, the longest idle of those quiet for at least
   * `hibernateUnderPressureAfterMs`. Each idle sandbox spins CPU under systrap: on a host of hundreds, a
   * fixed quiet period alone would let every sandbox made in the last minutes spin at once.
   */
  private dueForHibernation(running: SandboxRecord[], idleSince: Map<string, number>, t: number): string[] {
    const { hibernateAfterMs, liveIdleMax = Number.POSITIVE_INFINITY, workedSince } = this.opts;
    if (hibernateAfterMs === null) return [];
    // An expiry or an idle timeout that is due takes the sandbox instead (see `tick`).
    const quietFor = (s: SandboxRecord, ms: number) =>
      s.hibernate &&
      (s.expiresAt === null || s.expiresAt > t) &&
      (s.idleTimeoutMs === null || idleSince.get(s.id)! + s.idleTimeoutMs > t) &&
      idleSince.get(s.id)! + ms <= t &&
      !workedSince?.(s.id, t - ms);
    const byLongestIdle = (a: SandboxRecord, b: SandboxRecord) => idleSince.get(a.id)! - idleSince.get(b.id)!;
    const due = running.filter((s) => quietFor(s, hibernateAfterMs)).sort(byLongestIdle);
    const pressureAfterMs = Math.min(this.opts.hibernateUnderPressureAfterMs ?? hibernateAfterMs, hibernateAfterMs);
    const idle = running.filter((s) => quietFor(s, pressureAfterMs)).sort(byLongestIdle);
    const ids = new Set(due.map((s) => s.id));
    // One whose hibernation failed lately still counts as live, but the next longest idle goes instead.
    const excess = idle.length - liveIdleMax;
    for (const s of idle.filter((r) => !this.hibernationRetryAt.has(r.id)).slice(0, Math.max(0, excess))) {
      ids.add(s.id);
    }
    return [...ids];
  }

  /**
   * Starts a hibernation unless HIBERNATIONS_AT_ONCE are under way: many sandboxes that went idle
   * together (a batch created at once) would otherwise be checkpointed all at once, a burst of runsc
   * processes that stalls creates and API calls on a small host. The others wait for a later tick;
   * the tick does not wait for a checkpoint.
   */
  private hibernateSoon(id: string): void {
    if (this.hibernating.has(id) || this.hibernating.size >= HIBERNATIONS_AT_ONCE) return;
    if ((this.hibernationRetryAt.get(id) ?? 0) > now()) return;
    this.hibernating.add(id);
    void this.sandboxes
      .hibernate(id)
      .then(
        () => this.hibernationRetryAt.delete(id),
        () => this.hibernationRetryAt.set(id, now() + HIBERNATION_RETRY_MS),
      )
      .finally(() => this.hibernating.delete(id));
  }

  /** A sandbox at its expiry (running, or hibernated: hibernation does not extend a lifetime). */
  private async expire(s: SandboxRecord): Promise<void> {
    if (s.timeoutAction === "destroy") return this.sandboxes.destroyById(s.id, "expired");
    if (s.status === "paused") {
      // Hibernated already: from now on an ordinary pause, which only a resume (or autoResume) ends.
      await this.store.updateSandbox(s.id, { reason: null, expiresAt: null }, ["paused"], "timeout");
      return;
    }
    await this.sandboxes.pauseById(s.id, "timeout").catch(() => undefined);
  }

  /**
   * Creates that ended without recording how (the database was unreachable when the create failed, and
   * the sandbox was removed from the host): they are recorded as failed, as a restart would.
   */
  private async failAbandonedCreates(): Promise<void> {
    for (const s of await this.store.sandboxesInStatus(["creating"])) {
      if (this.sandboxes.isCreating(s.id)) continue;
      this.log.warn({ sandboxId: s.id }, "recording an abandoned create as failed");
      await this.runtime.destroy(s.id, s.netIndex);
      await this.store.updateSandbox(s.id, { status: "error", reason: "start_failed", netIndex: null }, ["creating"]);
    }
  }

  /**
   * Brings the host and the database into agreement after a start or a crash: interrupted creates and
   * destroys are finished, dead sandboxes are marked, and runsc containers or network namespaces that
   * have no live record are removed.
   */
  async reconcile(): Promise<void> {
    for (const s of await this.store.sandboxesInStatus(["creating"])) {
      await this.runtime.destroy(s.id, s.netIndex);
      await this.store.updateSandbox(s.id, { status: "error", reason: "start_failed", netIndex: null });
    }
    for (const s of await this.store.sandboxesInStatus(["destroying"])) {
      await this.sandboxes.destroyById(s.id, s.reason);
    }
    // An interrupted pause or resume: the runtime says which side of it the sandbox is on.
    for (const s of await this.store.sandboxesInStatus(["pausing", "resuming"])) {
      const alive = await this.runtime.alive(s.id);
      const status = alive ? "running" : (await this.runtime.hasCheckpoint(s.id)) ? "paused" : "running";
      await this.store.updateSandbox(s.id, {
        status,
        expiresAt: status === "running" ? expiryFrom(s, now()) : null,
      });
    }
    for (const s of await this.store.sandboxesInStatus(["running"])) {
      if (!(await this.runtime.alive(s.id))) await this.deaths.markDead(s.id);
      // The firewall table was rebuilt at start: every live sandbox gets its policy back.
      else await this.runtime.applyNetworkPolicy(egressTarget(s), s.networkPolicy);
    }
    await this.removeStrays();
  }

  /**
   * Removes from the host every sandbox the database does not count as one of this node's live ones
   * (left over by a crash, or written off by the cluster while this node was cut off: `node_lost`), and
   * the network slots no live sandbox holds. Needs no write: a fenced node does it before registering again.
   */
  async removeStrays(): Promise<string[]> {
    const live = await this.store.sandboxesInStatus(LIVE);
    const liveIds = new Set(live.map((s) => s.id));
    const removed: string[] = [];
    for (const id of await this.runtime.listIds()) {
      if (!liveIds.has(id)) {
        this.log.warn({ sandboxId: id }, "removing sandbox without a live record");
        this.agents.forget(id);
        await this.runtime.destroy(id, null);
        removed.push(id);
      }
    }
    const liveSlots = new Set(live.map((s) => s.netIndex));
    for (const slot of await this.runtime.listNetSlots()) {
      if (!liveSlots.has(slot)) await this.runtime.releaseNetSlot(slot);
    }
    return removed;
  }
}
