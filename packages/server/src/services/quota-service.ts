import type { OrgQuota } from "../domain/index.js";
import type { Store } from "../store/store.js";
import type { SandboxService } from "./sandbox-service.js";

/** Per-organisation quotas, set by operators; enforced by SandboxService.create. */
export class QuotaService {
  constructor(
    private readonly store: Store,
    private readonly sandboxes: SandboxService,
  ) {}

  async get(orgName: string) {
    const org = await this.store.ensureOrg(orgName);
    return {
      org: org.name,
      own: await this.store.getOrgQuota(org.id),
      effective: await this.sandboxes.effectiveQuota(org.id),
    };
  }

  async set(orgName: string, quota: OrgQuota) {
    const org = await this.store.ensureOrg(orgName);
    await this.store.setOrgQuota(org.id, quota);
    return this.get(orgName);
  }
}
