import type http from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";

/** A port of a sandbox, as a request names it. */
export interface SandboxPortTarget {
  sandboxId: string;
  port: number;
}

/** Handles a request before routing: it hijacks the reply (any method, unparsed body). */
export type TrafficHandler<T> = (request: FastifyRequest, reply: FastifyReply, target: T) => Promise<void>;

const HOST_PATTERN = /^(\d{1,5})-(sbx_[a-z2-7]{20})\./;

/** `{port}-{id}.{domain}` → the port and sandbox, when the Host header names one. */
export function parseSandboxHost(host: string | undefined, domain: string | undefined): SandboxPortTarget | undefined {
  if (!domain || !host) return undefined;
  const name = host.replace(/:\d+$/, "").toLowerCase();
  if (!name.endsWith(`.${domain}`)) return undefined;
  const m = HOST_PATTERN.exec(name);
  if (!m || name !== `${m[1]}-${m[2]}.${domain}`) return undefined;
  return { sandboxId: m[2]!, port: Number(m[1]) };
}

/**
 * The one place that sends traffic for sandboxes past Fastify's router, from a single `onRequest` hook:
 * a host name `{port}-{id}.{domain}` belongs to that port whatever the path (a port with its own
 * handler, such as E2B's envd, gets it; every other port goes to the port proxy); otherwise the first
 * path handler whose `claims` accepts the URL gets the request. Anything else is routed as usual.
 */
export class TrafficRouter {
  private readonly portHandlers = new Map<number, TrafficHandler<SandboxPortTarget>>();
  private otherPorts: TrafficHandler<SandboxPortTarget> | undefined;
  private readonly pathHandlers: {
    claims(url: string): boolean;
    sandboxOf(req: http.IncomingMessage): string | undefined;
    handle: TrafficHandler<undefined>;
  }[] = [];

  constructor(readonly domain: string | undefined) {}

  /**
   * The sandbox port a request names outside its path. Today that is its host name; routing by E2B's
   * `E2b-Sandbox-Port` header belongs here too, so that every handler sees one answer.
   */
  sandboxPortOf(req: http.IncomingMessage): SandboxPortTarget | undefined {
    return parseSandboxHost(req.headers.host, this.domain);
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
