import { EventEmitter } from "node:events";
import type { EventType, SandpitEvent } from "@sandpit/contract";
import type { EventFilter, EventRecord, OrgRecord } from "../domain/index.js";
import { iso } from "../lib/clock.js";
import type { Store } from "../store/store.js";

/** How often a follower looks at the database even without news (events written by another process). */
const FOLLOW_POLL_MS = 15_000;
const FOLLOW_BATCH = 500;

export function toEvent(r: EventRecord): SandpitEvent {
  return { id: r.id, type: r.type, sandboxId: r.sandboxId, at: iso(r.at)!, data: r.data };
}

export interface EventQuery {
  sandboxId?: string;
  types?: EventType[];
  since?: number;
}

/**
 * The organisation's lifecycle events: the store records them with each status change (so none is
 * missed); this service lists them, follows new ones as they are committed, and applies retention.
 */
export class EventService {
  private readonly committed = new EventEmitter();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    private readonly retentionMs: number,
  ) {
    this.committed.setMaxListeners(0);
    this.unsubscribe = store.onEvents((events) => this.committed.emit("events", events));
  }

  /** A page of events; `cursor` continues after the previous page in the same order. */
  async list(
    org: OrgRecord,
    query: EventQuery & { order: "asc" | "desc"; cursor?: number; limit: number },
  ): Promise<{ events: EventRecord[]; nextCursor?: number }> {
    const filter: EventFilter = {
      ...this.filterOf(query),
      order: query.order,
      limit: query.limit + 1,
      ...(query.cursor === undefined
        ? {}
        : query.order === "asc"
          ? { afterId: query.cursor }
          : { beforeId: query.cursor }),
    };
    const rows = await this.store.listEvents(org.id, filter);
    const page = rows.slice(0, query.limit);
    return rows.length > query.limit ? { events: page, nextCursor: page[page.length - 1]!.id } : { events: page };
  }

  /** The id after which a follower that asked for neither a position nor a time starts: now. */
  latestId(org: OrgRecord): Promise<number> {
    return this.store.latestEventId(org.id);
  }

  /**
   * Events after `afterId`, or from `since`, oldest first, then new ones as they are committed. With
   * neither, only events committed from now on.
   */
  async *follow(
    org: OrgRecord,
    query: EventQuery & { afterId?: number },
    signal: AbortSignal,
  ): AsyncGenerator<EventRecord> {
    const base = this.filterOf(query);
    // A catch-up by time alone covers everything up to the newest id seen before it started.
    const floor = query.afterId === undefined ? await this.store.latestEventId(org.id) : undefined;
    let after = query.afterId ?? (query.since === undefined ? floor : undefined);
    while (!signal.aborted) {
      // A committed event wakes the loop; listening starts before the read so that none slips between.
      const news = this.nextCommit(org.id, signal);
      const rows = await this.store.listEvents(org.id, {
        ...base,
        ...(after === undefined ? {} : { afterId: after }),
        order: "asc",
        limit: FOLLOW_BATCH,
      });
      for (const r of rows) {
        after = r.id;
        yield r;
      }
      after ??= floor;
      if (rows.length === FOLLOW_BATCH) news.cancel();
      else await news.promise;
    }
  }

  /** Resolves when events of the organisation are committed, the signal aborts, or after a while. */
  private nextCommit(orgId: string, signal: AbortSignal): { promise: Promise<void>; cancel: () => void } {
    let cancel = () => {};
    const promise = new Promise<void>((resolve) => {
      const onEvents = (events: EventRecord[]) => {
        if (events.some((e) => e.orgId === orgId)) done();
      };
      const timer = setTimeout(() => done(), FOLLOW_POLL_MS);
      const done = () => {
        clearTimeout(timer);
        this.committed.off("events", onEvents);
        signal.removeEventListener("abort", done);
        resolve();
      };
      cancel = done;
      this.committed.on("events", onEvents);
      signal.addEventListener("abort", done, { once: true });
    });
    return { promise, cancel };
  }

  private filterOf(query: EventQuery): Omit<EventFilter, "order" | "limit"> {
    return {
      ...(query.sandboxId === undefined ? {} : { sandboxId: query.sandboxId }),
      ...(query.types?.length ? { types: query.types } : {}),
      ...(query.since === undefined ? {} : { since: query.since }),
    };
  }

  purge(): Promise<void> {
    return this.store.purgeEvents(Date.now() - this.retentionMs);
  }

  close() {
    this.unsubscribe();
    this.committed.removeAllListeners();
  }
}
