import type http from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";

/** A port of a sandbox, as a request names it, and what the request asks of that port. */
export interface SandboxPortTarget {
  sandboxId: string;
  port: number;
  /** The path and query for the port: the whole URL by host name, the part after the prefix by headers. */
  path: string;
}

/** Requests under `prefix` whose headers name a sandbox and one of its ports (E2B's `E2B_SANDBOX_URL`). */
export interface HeaderTargets {
  prefix: string;
  sandboxIdHeader: string;
  portHeader: string;
}

/** Handles a request before routing: it hijacks the reply (any method, unparsed body). */
export type TrafficHandler<T> = (request: FastifyRequest, reply: FastifyReply, target: T) => Promise<void>;

const HOST_PATTERN = /^(\d{1,5})-(sbx_[a-z2-7]{20})\./;

/** `{port}-{id}.{domain}` → the port and sandbox, when the Host header names one. */
export function parseSandboxHost(
  host: string | undefined,
  domain: string | undefined,
): Omit<SandboxPortTarget, "path"> | undefined {
  if (!domain || !host) return undefined;
  const name = host.replace(/:\d+$/, "").toLowerCase();
  if (!name.endsWith(`.${domain}`)) return undefined;
  const m = HOST_PATTERN.exec(name);
  if (!m || name !== `${m[1]}-${m[2]}.${domain}`) return undefined;
  return { sandboxId: m[2]!, port: Number(m[1]) };
}

/** A port number as a header gives it: digits only, 1-65535. */
export function parsePortHeader(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string" || !/^\d{1,5}$/.test(value.trim())) return undefined;
  const port = Number(value.trim());
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** The part of a URL under `prefix` (`/`, `/x`, `?q`), or undefined when the URL is not under it. */
export function underPrefix(url: string, prefix: string): string | undefined {
  if (url === prefix) return "/";
  if (url.startsWith(`${prefix}/`)) return url.slice(prefix.length);
  if (url.startsWith(`${prefix}?`)) return `/${url.slice(prefix.length)}`;
  return undefined;
}

/**
 * The one place that sends traffic for sandboxes past Fastify's router, from a single `onRequest` hook:
 * a host name `{port}-{id}.{domain}` belongs to that port whatever the path (a port with its own
 * handler, such as E2B's envd, gets it; every other port goes to the port proxy); so does a request under
 * a header-target prefix whose headers name a sandbox and a port; otherwise the first path handler whose
 * `claims` accepts the URL gets the request. Anything else is routed as usual.
 */
export class TrafficRouter {
  private readonly portHandlers = new Map<number, TrafficHandler<SandboxPortTarget>>();
  private otherPorts: TrafficHandler<SandboxPortTarget> | undefined;
  private readonly pathHandlers: {
    claims(url: string): boolean;
    sandboxOf(req: http.IncomingMessage): string | undefined;
    handle: TrafficHandler<undefined>;
  }[] = [];
  private readonly headerTargets: HeaderTargets[] = [];

  constructor(readonly domain: string | undefined) {}

  /**
   * The sandbox port a request names: by its host name, or by headers under a header-target prefix (a
   * request there without both headers is left to the path handlers).
   */
  sandboxPortOf(req: http.IncomingMessage): SandboxPortTarget | undefined {
    const url = req.url ?? "/";
    const byHost = parseSandboxHost(req.headers.host, this.domain);
    if (byHost) return { ...byHost, path: url };
    for (const t of this.headerTargets) {
      const path = underPrefix(url, t.prefix);
      if (path === undefined) continue;
      const sandboxId = req.headers[t.sandboxIdHeader];
      const port = parsePortHeader(req.headers[t.portHeader]);
      if (typeof sandboxId === "string" && sandboxId && port !== undefined) return { sandboxId, port, path };
    }
    return undefined;
  }

  /** Requests under `prefix` that name their sandbox and port in headers go to that port's handler. */
  onHeaderTargets(targets: HeaderTargets): void {
    this.headerTargets.push({
      ...targets,
      sandboxIdHeader: targets.sandboxIdHeader.toLowerCase(),
      portHeader: targets.portHeader.toLowerCase(),
    });
  }

  /** Requests for this sandbox port, whatever the sandbox. */
  onPort(port: number, handler: TrafficHandler<SandboxPortTarget>): void {
    if (this.portHandlers.has(port)) throw new Error(`port ${port} already has a handler`);
    this.portHandlers.set(port, handler);
  }

  /** Requests for every sandbox port without its own handler (the port proxy). */
  onOtherPorts(handler: TrafficHandler<SandboxPortTarget>): void {
    if (this.otherPorts) throw new Error("other ports already have a handler");
    this.otherPorts = handler;
  }

  /**
   * Requests by path (URL with its query) that a handler claims before routing; `sandboxOf` names the
   * sandbox such a request is for, so that the node it lives on answers it.
   */
  onPath(
    claims: (url: string) => boolean,
    sandboxOf: (req: http.IncomingMessage) => string | undefined,
    handle: TrafficHandler<undefined>,
  ): void {
    this.pathHandlers.push({ claims, sandboxOf, handle });
  }

  /** The sandbox a request is traffic for (by host name or by a claimed path), if it is sandbox traffic. */
  sandboxOf(req: http.IncomingMessage): string | undefined {
    const target = this.sandboxPortOf(req);
    if (target && (this.portHandlers.has(target.port) || this.otherPorts)) return target.sandboxId;
    const url = req.url ?? "/";
    return this.pathHandlers.find((h) => h.claims(url))?.sandboxOf(req);
  }

  /** The `onRequest` hook: hands the request to its handler, or leaves it to Fastify's routes. */
  readonly hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const target = this.sandboxPortOf(request.raw);
    if (target) {
      const handler = this.portHandlers.get(target.port) ?? this.otherPorts;
      if (handler) return handler(request, reply, target);
    }
    const url = request.raw.url ?? "/";
    const byPath = this.pathHandlers.find((h) => h.claims(url));
    if (byPath) return byPath.handle(request, reply, undefined);
  };
}
