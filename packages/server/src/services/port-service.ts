import { DESKTOP_STREAM_PORT } from "@sandpit/contract";
import { ApiError } from "../errors.js";
import { tokensEqual } from "../lib/server-key.js";
import type { SandboxService } from "./sandbox-service.js";

export const TRAFFIC_TOKEN_HEADER = "x-sandpit-traffic-token";
export const TRAFFIC_TOKEN_QUERY = "sandpit_token";
/**
 * The token may also lead the path (`…/ports/3000/sandpit_token/<token>/app/page`): a URL that carries its
 * own token and still works with paths appended to it, which a query parameter does not.
 */
const TOKEN_PATH = /^\/sandpit_token\/([^/?]+)(\/.*)?$/;

/** The path of port traffic with a leading token segment taken out, and that token. */
export function splitTokenPath(path: string): { path: string; token: string | undefined } {
  const m = TOKEN_PATH.exec(path);
  return m ? { path: m[2] ?? "/", token: decodeURIComponent(m[1]!) } : { path, token: undefined };
}

/** Where the proxy serves a sandbox port by path (no trailing slash), optionally with the token in it. */
export function portPath(sandboxId: string, port: number, token?: string): string {
  const tokenSegment = token === undefined ? "" : `/${TRAFFIC_TOKEN_QUERY}/${encodeURIComponent(token)}`;
  return `/v1/sandboxes/${sandboxId}/ports/${port}${tokenSegment}`;
}

/**
 * Who may open a sandbox's desktop stream port while a live view runs there (DesktopStreamService):
 * `undefined` when none runs.
 */
export type StreamAccess = (
  sandboxId: string,
  token: string | undefined,
) => Promise<"open" | "missing" | "wrong" | undefined>;

export interface PortTarget {
  sandboxId: string;
  host: string;
  port: number;
}

/**
 * Who may reach a sandbox's exposed port, and where it is. Port traffic is authorised by the sandbox's
 * traffic token (header, query or leading path segment), not by an API key, so that browsers and webhooks can use the URL;
 * sandboxes created with `publicPorts: true` need none.
 */
export class PortService {
  constructor(
    private readonly sandboxes: SandboxService,
    readonly domain: string | undefined,
    /** Who opens the desktop stream port while a live view runs (none: it is an ordinary port). */
    private readonly streamAccess?: StreamAccess,
  ) {}

  /** Checks the token and returns where to send the traffic; errors are API errors (401/403/404/409). */
  async resolve(sandboxId: string, port: number, token: string | undefined): Promise<PortTarget> {
    // A live view's port opens with the stream's token alone: neither the traffic token nor public ports
    // open it, so stopping the stream shuts out every viewer. Without a live view it is an ordinary port.
    const stream = port === DESKTOP_STREAM_PORT ? await this.streamAccess?.(sandboxId, token) : undefined;
    if (stream === "missing") throw new ApiError("unauthorized", "the live view needs its stream token");
    if (stream === "wrong") throw new ApiError("forbidden", "wrong stream token");
    if (stream === "open") {
      const record = await this.sandboxes.getUnscoped(sandboxId);
      if (!record) throw new ApiError("not_found", `sandbox ${sandboxId} not found`);
      return { sandboxId, ...(await this.sandboxes.portAddress(record, port)) };
    }
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
    return ports.map((port) => {
      const origin = this.hostOrigin(baseUrl, sandboxId, port);
      return { port, url: `${baseUrl}${portPath(sandboxId, port)}/`, hostUrl: origin ? `${origin}/` : null };
    });
  }

  /**
   * The port's own origin by host name (`{scheme}://{port}-{id}.{domain}{:listen port}`), when the server has
   * a domain: pages served there cannot reach the API's or the console's origin.
   */
  hostOrigin(baseUrl: string, sandboxId: string, port: number): string | undefined {
    if (!this.domain) return undefined;
    const scheme = baseUrl.startsWith("https:") ? "https" : "http";
    const portSuffix = /:(\d+)$/.exec(new URL(baseUrl).host)?.[0] ?? "";
    return `${scheme}://${port}-${sandboxId}.${this.domain}${portSuffix}`;
  }
}
