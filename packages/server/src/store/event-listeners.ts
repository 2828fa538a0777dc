import type { EventRecord } from "../domain/index.js";

/** Who hears of committed events (`Store.onEvents`): told after the commit, never able to undo it. */
export class EventListeners {
  private readonly listeners = new Set<(events: EventRecord[]) => void>();

  /** Tells the listeners about events that were committed. */
  notify(events: EventRecord[]) {
    if (events.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(events);
      } catch {
        // A listener's failure must not undo or hide a committed change.
      }
    }
  }

  onEvents(listener: (events: EventRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
