import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError } from "../errors.js";
import { randomBase32 } from "../lib/ids.js";
import type { Store } from "../store/store.js";

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
const WAIT_FOR_ORIGINAL_MS = 120_000;
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export type IdempotencyOutcome = { kind: "proceed" } | { kind: "replay"; status: number; body: string };

/**
 * `Idempotency-Key` on mutating requests: the first request with a key runs; a retry with the same key
 * and body gets the stored response — also while the first is still running (it waits) and after a
 * server restart (responses are stored in the database). The same key with another body is a 422. A
 * request whose server died before answering is run again by the retry that finds it.
 */
export class IdempotencyService {
  /** This server process: in-flight keys of another owner belong to a process that is gone. */
  private readonly owner = `srv_${randomBase32(12)}`;
  private readonly live = new Set<string>();

  constructor(private readonly store: Store) {}

  static hash(method: string, url: string, body: unknown): string {
    return createHash("sha256")
      .update(`${method} ${url.split("?")[0]}\n${JSON.stringify(body ?? null)}`)
      .digest("hex");
  }

  async begin(orgId: string, key: string, requestHash: string): Promise<IdempotencyOutcome> {
    if (!KEY_PATTERN.test(key)) {
      throw new ApiError("validation_failed", "Invalid request: Idempotency-Key must be 1-255 printable characters", {
        fields: [{ field: "Idempotency-Key", rule: "invalid_format", message: "1-255 printable ASCII characters" }],
      });
    }
    const deadline = Date.now() + WAIT_FOR_ORIGINAL_MS;
    for (;;) {
      const claim = await this.store.claimIdempotencyKey({
        orgId,
        key,
        requestHash,
        owner: this.owner,
        createdAt: Date.now(),
      });
      if (claim.claimed) {
        this.live.add(`${orgId}\n${key}`);
        return { kind: "proceed" };
      }
      const existing = claim.existing;
      if (existing.requestHash !== requestHash) {
        throw new ApiError("idempotency_mismatch", "this Idempotency-Key was used with a different request", {
          key,
        });
      }
      if (existing.responseStatus !== null) {
        return { kind: "replay", status: existing.responseStatus, body: existing.responseBody ?? "" };
      }
      const ownerAlive = existing.owner === this.owner && this.live.has(`${orgId}\n${key}`);
      if (!ownerAlive && (await this.store.takeOverIdempotencyKey(orgId, key, existing.owner, this.owner))) {
        this.live.add(`${orgId}\n${key}`);
        return { kind: "proceed" };
      }
      if (Date.now() > deadline) {
        throw new ApiError("conflict", "the original request with this Idempotency-Key is still running");
      }
      await sleep(100);
    }
  }

  /** Stores the response for replays; server errors are not stored, so a retry runs again. */
  async finish(orgId: string, key: string, status: number, body: string): Promise<void> {
    this.live.delete(`${orgId}\n${key}`);
    if (status >= 500) await this.store.releaseIdempotencyKey(orgId, key);
    else await this.store.completeIdempotencyKey(orgId, key, status, body);
  }

  async abandon(orgId: string, key: string): Promise<void> {
    this.live.delete(`${orgId}\n${key}`);
    await this.store.releaseIdempotencyKey(orgId, key);
  }

  purge(): Promise<void> {
    return this.store.purgeIdempotencyKeys(Date.now() - IDEMPOTENCY_TTL_MS);
  }
}
