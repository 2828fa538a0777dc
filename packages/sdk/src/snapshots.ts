import { listSnapshotsResponseSchema, type Snapshot, snapshotSchema } from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";

export type { Snapshot };

/**
 * Snapshots of sandboxes, memory and processes included: `sandbox.snapshot()` takes one,
 * `Sandbox.create({ snapshotId })` starts a sandbox that continues from it.
 *
 * @example
 * ```ts
 * const snapshot = await sandbox.snapshot({ name: "warmed-up" });
 * const copy = await Sandbox.create({ snapshotId: snapshot.id });
 * await Snapshots.delete(snapshot.id);
 * ```
 */
export class Snapshots {
  private constructor() {}

  /** The organisation's snapshots. */
  static async list(opts?: ConnectionOptions): Promise<Snapshot[]> {
    const { snapshots } = await client(opts).json(listSnapshotsResponseSchema, "/snapshots");
    return snapshots;
  }

  /** One snapshot by id; throws a {@link NotFoundError} when there is none. */
  static async get(id: string, opts?: ConnectionOptions): Promise<Snapshot> {
    return client(opts).json(snapshotSchema, `/snapshots/${encodeURIComponent(id)}`);
  }

  /** Deletes a snapshot; sandboxes started from it keep running. */
  static async delete(id: string, opts?: ConnectionOptions): Promise<void> {
    await client(opts).empty(`/snapshots/${encodeURIComponent(id)}`, { method: "DELETE" });
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
