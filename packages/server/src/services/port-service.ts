import { ApiError } from "../errors.js";
import { tokensEqual } from "../lib/server-key.js";
import type { SandboxService } from "./sandbox-service.js";

export const TRAFFIC_TOKEN_HEADER = "x-sandpit-traffic-token";
export const TRAFFIC_TOKEN_QUERY = "sandpit_token";

export interface PortTarget {
  sandboxId: string;
  host: string;
  port: number;
}

/**
 * Who may reach a sandbox's exposed port, and where it is. Port traffic is authorised by the sandbox's
 * traffic token (header or query), not by an API key, so that browsers and webhooks can use the URL;
 * sandboxes created with `publicPorts: true` need none.
 */
export class PortService {
  constructor(
    private readonly sandboxes: SandboxService,
    readonly domain: string | undefined,
  ) {}

  /** Checks the token and returns where to send the traffic; errors are API errors (401/403/404/409). */
  async resolve(sandboxId: string, port: number, token: string | undefined): Promise<PortTarget> {
    const record = await this.sandboxes.withExposedPort(sandboxId, port);
    if (!record) throw new ApiError("not_found", `port ${port} of sandbox ${sandboxId} is not exposed`);
    if (!record.publicPorts) {
      if (!token) {
        throw new ApiError("unauthorized", `this port needs the sandbox's traffic token (${TRAFFIC_TOKEN_HEADER})`);
      }
      if (!tokensEqual(token, record.trafficToken)) throw new ApiError("forbidden", "wrong traffic token");
    }
    return { sandboxId, ...(await this.sandboxes.portAddress(record, port)) };
  }

  urls(baseUrl: string, sandboxId: string, ports: number[]) {
    const scheme = baseUrl.startsWith("https:") ? "https" : "http";
    const portSuffix = /:(\d+)$/.exec(new URL(baseUrl).host)?.[0] ?? "";
    return ports.map((port) => ({
      port,
      url: `${baseUrl}/v1/sandboxes/${sandboxId}/ports/${port}/`,
      hostUrl: this.domain ? `${scheme}://${port}-${sandboxId}.${this.domain}${portSuffix}/` : null,
    }));
  }
}
