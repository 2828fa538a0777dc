import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import type { EgressTransform, NetworkPolicy } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { SandboxAddressing } from "./addressing.js";
import type { EgressCa } from "./egress-ca.js";
import { dnsDecision, domainMatches } from "./egress-rules.js";
import { GatewayListeners } from "./gateway-listeners.js";

/** Whom a sandbox's brokered connections belong to, and what to do with them. */
export interface BrokerClient {
  orgId: string;
  sandboxId: string;
  policy: NetworkPolicy;
}

/** The two ends of a sandbox's veth: the broker listens on the host end and answers the sandbox end. */
export type BrokerAddress = Pick<SandboxAddressing, "hostIp" | "sandboxIp">;

/** One request the broker forwarded (or refused), for the egress audit log. */
export interface BrokeredRequest {
  sandboxId: string;
  orgId: string;
  domain: string;
  ip: string | null;
  port: number;
  decision: "allowed" | "denied";
  rule: string;
  bytesOut: number;
  bytesIn: number;
  status: number | null;
}

export interface EgressBrokerOptions {
  ca: EgressCa;
  /** Resolves a name the way the sandbox's DNS would (same upstream); IPv4 addresses. */
  resolve: (name: string) => Promise<string[]>;
  /** Whether Sandpit never lets a sandbox reach this address (host, LAN, metadata, other sandboxes). */
  isBlocked: (ip: string) => boolean;
  /** Extra CA certificates (PEM) trusted for upstream servers, besides the system's. */
  upstreamCa?: string | undefined;
  onRequest?: (r: BrokeredRequest) => void;
  log: FastifyBaseLogger;
}

const RESOLVE_CACHE_MS = 30_000;

/** Hop-by-hop headers are the connection's, not the request's: never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Methods a request can be sent again with (RFC 9110 idempotent), when it has no body. */
const RETRYABLE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** Whether a request carries a body: HTTP/1.1 requests without a length or transfer coding have none. */
function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && Number(length) !== 0);
}

/** The transform of the first pattern that matches the name. */
export function transformFor(transforms: EgressTransform[], name: string): EgressTransform | undefined {
  return transforms.find((t) => domainMatches(name, t.domain));
}

/** Request headers as they leave for the upstream: stripped ones gone, injected ones set. */
export function transformHeaders(headers: http.IncomingHttpHeaders, t: EgressTransform): http.OutgoingHttpHeaders {
  const strip = new Set(t.stripHeaders.map((h) => h.toLowerCase()));
  const injected = new Set(Object.keys(t.injectHeaders).map((h) => h.toLowerCase()));
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || strip.has(k) || injected.has(k)) continue;
    out[k] = v;
  }
  for (const [k, v] of Object.entries(t.injectHeaders)) out[k] = v;
  return out;
}

/**
 * The egress broker: the DNS proxy answers a sandbox's queries for its transform domains with the
 * sandbox's gateway address, and the firewall redirects TCP 80/443 to that address here. So only those
 * domains are intercepted. HTTPS is terminated with a certificate from the organisation's CA (which the
 * sandbox trusts), the request gets its headers transformed and goes on to the real upstream over TLS,
 * verified against the host's trust store — a bad upstream certificate fails the request, closed.
 */
export class EgressBroker {
  private readonly listeners = new GatewayListeners<net.Server>({
    open: (host, port) => {
      const server = net.createServer((socket) => this.accept(socket));
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve(server);
        });
      });
    },
    portOf: (server) => (server.address() as net.AddressInfo).port,
    close: (server) => server.close(),
  });
  private readonly clients = new Map<string, BrokerClient>();
  private readonly http: http.Server;
  private readonly upstreamAgent: https.Agent;
  private readonly upstreamContext: tls.SecureContext | undefined;
  private readonly resolved = new Map<string, { ips: string[]; until: number }>();
  /**
   * The context every intercepted TLS connection starts with, until SNI picks the name's certificate.
   * One for all: a TLS socket without one makes its own, ~0.3 ms of every handshake.
   */
  private readonly initialContext = tls.createSecureContext();

  constructor(private readonly opts: EgressBrokerOptions) {
    this.http = http.createServer((req, res) => {
      this.forward(req, res).catch((e: unknown) => {
        this.opts.log.warn({ err: e }, "egress broker request failed");
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end("sandpit egress broker: upstream request failed\n");
      });
    });
    this.http.on("clientError", (_e, socket) => socket.destroy());
    // Extra upstream CAs go in one secure context made here, not as an agent `ca` option: the agent
    // would join every PEM of the list into its pool key on each request (~0.4 ms) and parse them
    // all again for each new upstream connection.
    this.upstreamContext = opts.upstreamCa
      ? tls.createSecureContext({ ca: [...tls.rootCertificates, opts.upstreamCa] })
      : undefined;
    this.upstreamAgent = new https.Agent({
      keepAlive: true,
      maxSockets: 256,
      noDelay: true,
      ...(this.upstreamContext ? { secureContext: this.upstreamContext } : {}),
    });
  }

  /**
   * Tells the broker whose connections to accept from a sandbox, or (`undefined`, or a policy without
   * transforms) that it has none: the broker then stops listening on that sandbox's gateway.
   */
  async setClient(a: BrokerAddress, client: BrokerClient | undefined): Promise<void> {
    if (client?.policy.transforms?.length) {
      this.clients.set(a.sandboxIp, client);
      await this.listeners.add(a.hostIp);
    } else {
      this.clients.delete(a.sandboxIp);
      await this.listeners.remove(a.hostIp);
    }
  }

  /**
   * Reserves the broker's port and returns it. The broker listens only on the gateways of sandboxes with
   * transforms (`setClient`), on no other address of the host.
   */
  start(): Promise<number> {
    return this.listeners.reserve();
  }

  close() {
    this.listeners.close();
    this.http.close();
    this.upstreamAgent.destroy();
  }

  private accept(socket: net.Socket) {
    // Small writes (TLS records, response heads) must not wait for Nagle's delayed ACK round.
    socket.setNoDelay(true);
    const sandboxIp = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
    const client = this.clients.get(sandboxIp);
    if (!client) {
      socket.destroy();
      return;
    }
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] === 0x16) this.acceptTls(socket, client);
      else this.handOver(socket, client, undefined);
    });
    socket.on("error", () => socket.destroy());
  }

  private acceptTls(socket: net.Socket, client: BrokerClient) {
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: this.initialContext,
      SNICallback: (name, cb) => {
        if (!transformFor(client.policy.transforms ?? [], name)) {
          this.record(client, name, null, 443, "denied", "broker.not-a-transform-domain", null);
          cb(new Error(`${name} is not brokered for this sandbox`));
          return;
        }
        this.opts.ca.contextFor(client.orgId, name).then(
          (context) => cb(null, context),
          (e: unknown) => cb(e instanceof Error ? e : new Error(String(e))),
        );
      },
    });
    secure.on("error", () => secure.destroy());
    secure.once("secure", () =>
      this.handOver(secure, client, (secure as tls.TLSSocket & { servername?: string }).servername),
    );
  }

  private handOver(socket: net.Socket, client: BrokerClient, servername: string | undefined) {
    brokered.set(socket, { client, servername });
    this.http.emit("connection", socket);
    socket.resume();
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse) {
    const origin = brokered.get(req.socket);
    if (!origin) throw new Error("request without a brokered connection");
    const { client, servername } = origin;
    const tlsSide = servername !== undefined;
    const hostHeader = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const name = servername ?? hostHeader;
    const port = tlsSide ? 443 : 80;
    const transform = transformFor(client.policy.transforms ?? [], name);
    // Over TLS the Host must be the name the certificate was issued for: no fronting to another domain.
    if (!transform || (tlsSide && hostHeader && hostHeader !== name)) {
      this.record(client, name, null, port, "denied", "broker.not-a-transform-domain", 421);
      res.writeHead(421, { "content-type": "text/plain" }).end(`sandpit egress broker: ${name} is not brokered\n`);
      return;
    }
    // A transform does not allow a domain: the policy still decides (as it does for DNS).
    if (dnsDecision(client.policy, name) === "refuse") {
      this.record(client, name, null, port, "denied", "policy.domain", 403);
      res.writeHead(403, { "content-type": "text/plain" }).end(`sandpit egress broker: ${name} is not allowed\n`);
      return;
    }
    const ips = this.cachedAddresses(name) ?? (await this.resolve(name));
    const ip = ips.find((a) => !this.opts.isBlocked(a));
    if (!ip) {
      this.record(client, name, ips[0] ?? null, port, "denied", "always-blocked", 502);
      res
        .writeHead(502, { "content-type": "text/plain" })
        .end(`sandpit egress broker: ${name} does not resolve to a reachable address\n`);
      return;
    }
    const headers = transformHeaders(req.headers, transform);
    let bytesOut = 0;
    let bytesIn = 0;
    const options: https.RequestOptions = {
      host: ip,
      port,
      method: req.method,
      path: req.url,
      headers: { ...headers, host: req.headers.host ?? name },
      ...(tlsSide ? { servername: name, agent: this.upstreamAgent } : {}),
    };
    const bodiless = !hasBody(req);
    const attempt = (request: https.RequestOptions) =>
      new Promise<"done" | "stale">((resolve, reject) => {
        const upstream = (tlsSide ? https : http).request(request, (up) => {
          const out: http.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
          res.writeHead(up.statusCode ?? 502, out);
          up.on("data", (c: Buffer) => {
            bytesIn += c.length;
          });
          up.pipe(res);
          up.on("end", () => {
            this.record(client, name, ip, port, "allowed", "transform", up.statusCode ?? null, bytesOut, bytesIn);
            resolve("done");
          });
          up.on("error", reject);
        });
        upstream.on("error", (e: NodeJS.ErrnoException) => {
          // A kept-alive connection the upstream closed while it lay idle fails before any answer: the
          // request never reached it, and one without a body can go again on a new connection.
          if (upstream.reusedSocket && e.code === "ECONNRESET" && bodiless && RETRYABLE_METHODS.has(req.method ?? "")) {
            resolve("stale");
            return;
          }
          // A certificate the host does not trust, a refused connection: the request fails, closed.
          this.record(client, name, ip, port, "denied", "broker.upstream-failed", 502, bytesOut, 0);
          reject(e);
        });
        // A request without a body (most are) is sent at once, not when its empty stream ends a few
        // ticks later.
        if (bodiless) {
          upstream.end();
          return;
        }
        req.on("data", (c: Buffer) => {
          bytesOut += c.length;
        });
        req.pipe(upstream);
      });
    // The second attempt takes a connection of its own: the pool's other idle sockets to that upstream
    // may be just as stale.
    if ((await attempt(options)) === "stale") {
      const ownTls = tlsSide && this.upstreamContext ? { secureContext: this.upstreamContext } : {};
      await attempt({ ...options, agent: false, ...ownTls });
    }
  }

  /** Upstream addresses, kept for a short while: a lookup per request would cost a DNS round trip each. */
  private cachedAddresses(name: string): string[] | undefined {
    const cached = this.resolved.get(name);
    return cached && cached.until > Date.now() ? cached.ips : undefined;
  }

  /** Looks a name up (on a cache miss) and keeps the answer. */
  private async resolve(name: string): Promise<string[]> {
    const ips = await this.opts.resolve(name);
    if (this.resolved.size > 10_000) this.resolved.clear();
    this.resolved.set(name, { ips, until: Date.now() + RESOLVE_CACHE_MS });
    return ips;
  }

  private record(
    client: BrokerClient,
    domain: string,
    ip: string | null,
    port: number,
    decision: "allowed" | "denied",
    rule: string,
    status: number | null,
    bytesOut = 0,
    bytesIn = 0,
  ) {
    this.opts.onRequest?.({
      sandboxId: client.sandboxId,
      orgId: client.orgId,
      domain,
      ip,
      port,
      decision,
      rule,
      bytesOut,
      bytesIn,
      status,
    });
  }
}

/** Which sandbox (and TLS name) a connection handed to the HTTP parser came from. */
const brokered = new WeakMap<net.Socket, { client: BrokerClient; servername: string | undefined }>();
