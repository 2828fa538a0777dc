import {
  listWarmPoolsResponseSchema,
  type OrgQuota,
  type OrgQuotaResponse,
  orgQuotaResponseSchema,
  type PutWarmPoolRequest,
  type WarmPool,
  type WarmPoolStatus,
  warmPoolSchema,
} from "@sandpit/contract";
import { z } from "zod";
import { ApiClient } from "./api-client.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";

export type { OrgQuota, OrgQuotaResponse, PutWarmPoolRequest, WarmPool, WarmPoolStatus };

/**
 * The operators' API: organisations' quotas, warm pools and the server's Prometheus metrics. Every call
 * needs the server's admin key (SANDPIT_ADMIN_KEY) as `apiKey`.
 *
 * @example
 * ```ts
 * const admin = { apiKey: process.env.SANDPIT_ADMIN_KEY };
 * await Admin.putWarmPool("python-small", { template: "python", size: 4 }, admin);
 * await Admin.setQuota("acme", { maxSandboxes: 20, maxVcpus: null, maxMemoryMb: null }, admin);
 * ```
 */
export class Admin {
  private constructor() {}

  /** The warm pools with how many ready sandboxes each holds now. */
  static async warmPools(opts?: ConnectionOptions): Promise<WarmPoolStatus[]> {
    return (await client(opts).json(listWarmPoolsResponseSchema, "/admin/warm-pools")).pools;
  }

  /** Creates or resizes a warm pool; it fills in the background. */
  static async putWarmPool(id: string, pool: PutWarmPoolRequest, opts?: ConnectionOptions): Promise<WarmPool> {
    return client(opts).json(warmPoolSchema, `/admin/warm-pools/${encodeURIComponent(id)}`, {
      method: "PUT",
      json: pool,
    });
  }

  /** Removes a warm pool and destroys its ready sandboxes. */
  static async deleteWarmPool(id: string, opts?: ConnectionOptions): Promise<void> {
    await client(opts).empty(`/admin/warm-pools/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** An organisation's own quota and the one enforced (its own over the server's defaults). */
  static async quota(org: string, opts?: ConnectionOptions): Promise<OrgQuotaResponse> {
    return client(opts).json(orgQuotaResponseSchema, `/admin/orgs/${encodeURIComponent(org)}/quota`);
  }

  /** Sets an organisation's quota (null: the server's default); creates the organisation if needed. */
  static async setQuota(org: string, quota: OrgQuota, opts?: ConnectionOptions): Promise<OrgQuotaResponse> {
    return client(opts).json(orgQuotaResponseSchema, `/admin/orgs/${encodeURIComponent(org)}/quota`, {
      method: "PUT",
      json: quota,
    });
  }

  /** The server's Prometheus metrics in the text exposition format. */
  static async prometheusMetrics(opts?: ConnectionOptions): Promise<string> {
    const bytes = await client(opts).bytes("/metrics", { unversioned: true, headers: { accept: "text/plain" } });
    return new TextDecoder().decode(bytes);
  }
}

const healthSchema = z.object({ ok: z.boolean() });

/** The OpenAPI 3 document of the native API: its version, paths and whatever else it holds. */
export interface OpenApiDocument {
  openapi: string;
  /** Operations by path, then by lower-case HTTP method. */
  paths: Record<string, Record<string, unknown>>;
  [field: string]: unknown;
}

const openApiSchema: z.ZodType<OpenApiDocument> = z.looseObject({
  openapi: z.string(),
  paths: z.record(z.string(), z.record(z.string(), z.unknown())),
});

/**
 * What the server says about itself: whether it is up and its OpenAPI document. Neither needs a key.
 *
 * @example
 * ```ts
 * if ((await Meta.health()).ok) console.log(Object.keys((await Meta.openApi()).paths));
 * ```
 */
export class Meta {
  private constructor() {}

  /** Liveness of the server. */
  static async health(opts?: ConnectionOptions): Promise<{ ok: boolean }> {
    return client(opts).json(healthSchema, "/health");
  }

  /** The OpenAPI 3 document of the native API. */
  static async openApi(opts?: ConnectionOptions): Promise<OpenApiDocument> {
    return client(opts).json(openApiSchema, "/openapi.json");
  }
}

function client(opts: ConnectionOptions | undefined): ApiClient {
  return new ApiClient(resolveConfig(opts));
}
