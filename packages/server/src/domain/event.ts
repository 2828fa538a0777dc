import type { EventType } from "@sandpit/contract";

/** A lifecycle event of a sandbox, recorded with the status change that caused it. */
export interface EventRecord {
  /** Increasing, never reused: the cursor of lists and streams. */
  id: number;
  orgId: string;
  sandboxId: string;
  type: EventType;
  at: number;
  data: Record<string, unknown>;
}

export interface EventFilter {
  sandboxId?: string;
  types?: EventType[];
  /** Only events at or after this time. */
  since?: number;
  /** Only events with a larger id. */
  afterId?: number;
  /** Only events with a smaller id. */
  beforeId?: number;
  order: "asc" | "desc";
  limit: number;
}
