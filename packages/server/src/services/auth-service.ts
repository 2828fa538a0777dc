import { createHash } from "node:crypto";
import type { OrgRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { type ApiKeyFormat, newApiKey } from "../lib/ids.js";
import type { Store } from "../store/store.js";

const hashKey = (key: string) => createHash("sha256").update(key).digest("hex");

/** API keys → organisations. Keys are stored as SHA-256 digests only. */
export class AuthService {
  private readonly cache = new Map<string, OrgRecord>();

  constructor(private readonly store: Store) {}

  async createKey(
    orgName: string,
    label = "created",
    format: ApiKeyFormat = "sandpit",
  ): Promise<{ key: string; org: OrgRecord }> {
    const org = await this.store.ensureOrg(orgName);
    const key = newApiKey(format);
    await this.store.addApiKey(org.id, hashKey(key), label);
    return { key, org };
  }

  /** Makes sure a given key exists (the SANDPIT_API_KEY of the operator). */
  async registerKey(orgName: string, key: string): Promise<void> {
    const org = await this.store.ensureOrg(orgName);
    await this.store.addApiKey(org.id, hashKey(key), "configured");
  }

  async hasAnyKey(): Promise<boolean> {
    return (await this.store.countApiKeys()) > 0;
  }

  /** Resolves a bearer key to its organisation; 401 when it is missing or unknown. */
  async authenticate(key: string | undefined): Promise<OrgRecord> {
    if (!key) throw new ApiError("unauthorized", "Missing API key: send Authorization: Bearer <key>");
    const digest = hashKey(key);
    const cached = this.cache.get(digest);
    if (cached) return cached;
    const org = await this.store.orgByApiKeyHash(digest);
    if (!org) throw new ApiError("unauthorized", "Invalid API key");
    this.cache.set(digest, org);
    return org;
  }
}
