export interface OrgRecord {
  id: string;
  name: string;
  createdAt: number;
}

/** Per-organisation limits; null means no limit. */
export interface OrgQuota {
  maxSandboxes: number | null;
  maxVcpus: number | null;
  maxMemoryMb: number | null;
}

/** Thrown by insertSandbox when the organisation would go over a quota. */
export class QuotaExceededError extends Error {
  constructor(
    readonly limit: keyof OrgQuota,
    readonly max: number,
    readonly current: number,
  ) {
    super(`quota exceeded: ${limit} is ${max}, ${current} in use`);
  }
}
