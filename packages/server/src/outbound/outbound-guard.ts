import { lookup } from "node:dns/promises";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { classifyAddress } from "./address-policy.js";
import { formatIpAddress, type IpBytes, type IpPrefix, parseIpAddress, parseIpPrefix } from "./ip-address.js";

/**
 * A destination Sandpit does not connect to on a user's behalf. The message names the host as the user
 * wrote it and never depends on whether anything listens there: nothing was connected to.
 */
export class OutboundBlockedError extends Error {}

/** The address a request will be connected to, checked. */
export interface PinnedDestination {
  /** The URL's host without brackets, as written (after URL parsing): for TLS's servername and messages. */
  hostname: string;
  port: number;
  /** Canonical text of the checked address. */
  address: string;
  family: 4 | 6;
}

export type Resolver = (hostname: string) => Promise<{ address: string }[]>;

export interface OutboundGuardOptions {
  /** Hosts an admin lets the server reach whatever their address (`host` or `host:port`, lower case). */
  allowedHosts: string[];
  /** The sandboxes' /16 (`SANDPIT_SANDBOX_SUBNET`): another tenant's sandbox is never a fetch target. */
  sandboxSubnet: string;
  /** The host's own addresses, asked at every check (interfaces come and go); default: every interface's. */
  hostAddresses?: () => string[];
  /** Name resolution; default the system's (getaddrinfo, as every other connection of the host). */
  resolve?: Resolver;
}

export interface OutboundRequestOptions {
  method?: "GET" | "HEAD" | "POST";
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /** A connection that sends nothing for this long fails. */
  idleTimeoutMs: number;
  /** Redirects followed, each checked like the first request; 0 returns a 3xx response as it is. */
  maxRedirects?: number;
}

const systemResolve: Resolver = (hostname) => lookup(hostname, { all: true, verbatim: true });

function ownInterfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

const ADMIN_HINT = "(an admin can allow a host with SANDPIT_OUTBOUND_ALLOWED_HOSTS)";
const NOT_PUBLIC = `a non-public address, which Sandpit does not connect to on a user's behalf ${ADMIN_HINT}`;
/** The same for a name that does not resolve and one that resolves inside: no oracle of internal DNS. */
const NO_PUBLIC_ANSWER = `does not resolve to a public address, which is all Sandpit connects to on a user's behalf ${ADMIN_HINT}`;

/**
 * Every connection the server makes on a user's behalf (git and tarball sources, image registries and
 * their token services, webhooks) goes through here. The host is resolved once, every answer must be a
 * public unicast address that is neither a sandbox's nor the host's own, and the connection goes to the
 * checked address (TLS still verifies the host's name), so DNS rebinding between check and connect is not
 * possible. Redirects are checked the same way. Hosts an admin lists are reached whatever their address.
 */
export class OutboundGuard {
  private readonly sandboxSubnet: IpPrefix;
  private readonly hostAddresses: () => string[];
  private readonly resolveName: Resolver;

  constructor(private readonly opts: OutboundGuardOptions) {
    this.sandboxSubnet = { ...parseIpPrefix(opts.sandboxSubnet), bits: 16 };
    this.hostAddresses = opts.hostAddresses ?? ownInterfaceAddresses;
    this.resolveName = opts.resolve ?? systemResolve;
  }

  private allowedByAdmin(hostname: string, port: number): boolean {
    const host = hostname.toLowerCase();
    // An IPv6 host may be listed bare (`::1`) or as it stands in a URL (`[::1]`, `[::1]:5000`).
    const written = host.includes(":") ? [host, `[${host}]`] : [host];
    return this.opts.allowedHosts.some((a) => written.some((w) => a === w || a === `${w}:${port}`));
  }

  private refusedRanges(): [IpPrefix, string][] {
    const own = this.hostAddresses().flatMap((text): [IpPrefix, string][] => {
      const bytes = parseIpAddress(text);
      return bytes ? [[{ bytes, bits: bytes.length * 8 }, "one of the host's own addresses"]] : [];
    });
    return [[this.sandboxSubnet, "a sandbox's address"], ...own];
  }

  /**
   * Resolves the URL's host and returns the address to connect to; throws OutboundBlockedError when the
   * URL may not be fetched (not http(s), a non-public address among the answers, or no answer).
   */
  async resolve(url: URL): Promise<PinnedDestination> {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new OutboundBlockedError(`${url.protocol} URLs are not fetched, only http and https`);
    }
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
    const literal = parseIpAddress(hostname);
    // Text that Node would connect to as an address but this parser does not read as one: refuse, never guess.
    if (!literal && (isIP(hostname) !== 0 || hostname.includes(":") || hostname === "")) {
      throw new OutboundBlockedError(`${url.host} is not a host Sandpit can check`);
    }
    const lower = hostname.toLowerCase().replace(/\.$/, "");
    const loopbackName = lower === "localhost" || lower.endsWith(".localhost");
    let answers: IpBytes[];
    if (literal) answers = [literal];
    else if (loopbackName && !this.allowedByAdmin(hostname, port)) {
      throw new OutboundBlockedError(`${url.host} is ${NOT_PUBLIC}`);
    } else {
      let resolved: { address: string }[];
      try {
        resolved = await this.resolveName(hostname);
      } catch {
        resolved = [];
      }
      answers = resolved.flatMap((r) => {
        const bytes = parseIpAddress(r.address);
        return bytes ? [bytes] : [];
      });
      if (answers.length === 0 || answers.length !== resolved.length) {
        throw new OutboundBlockedError(`${url.host} ${NO_PUBLIC_ANSWER}`);
      }
    }
    const first = answers[0]!;
    const pinned: PinnedDestination = {
      hostname,
      port,
      address: formatIpAddress(first),
      family: first.length === 4 ? 4 : 6,
    };
    if (this.allowedByAdmin(hostname, port)) return pinned;
    const refused = this.refusedRanges();
    for (const answer of answers) {
      const verdict = classifyAddress(answer, refused);
      if (!verdict.public) {
        throw new OutboundBlockedError(`${url.host} ${literal ? `is ${NOT_PUBLIC}` : NO_PUBLIC_ANSWER}`);
      }
    }
    return pinned;
  }

  /**
   * An HTTP(S) request connected to the checked address, following up to `maxRedirects` redirects (each
   * checked again; credentials are not sent to another origin). Resolves with the response and its URL.
   */
  async request(url: URL, opts: OutboundRequestOptions): Promise<{ response: IncomingMessage; url: URL }> {
    let current = url;
    let method = opts.method ?? "GET";
    let headers = { ...(opts.headers ?? {}) };
    for (let redirects = 0; ; redirects++) {
      const response = await this.requestOnce(current, method, headers, opts);
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if ((opts.maxRedirects ?? 0) === 0 || status < 300 || status > 399 || !location) {
        return { response, url: current };
      }
      response.resume();
      if (redirects >= (opts.maxRedirects ?? 0)) {
        throw new Error(`more than ${opts.maxRedirects} redirects`);
      }
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new Error("a redirect to something that is not a URL");
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new OutboundBlockedError("a redirect to a non-http URL");
      }
      if (next.origin !== current.origin) {
        const { authorization: _, ...rest } = headers;
        headers = rest;
      }
      if (status === 303) method = "GET";
      current = next;
    }
  }

  private async requestOnce(
    url: URL,
    method: string,
    headers: Record<string, string>,
    opts: OutboundRequestOptions,
  ): Promise<IncomingMessage> {
    const pinned = await this.resolve(url);
    const tls = url.protocol === "https:";
    const body = method === "POST" ? opts.body : undefined;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const options: https.RequestOptions = {
        // The checked address itself: no second lookup that a rebinding DNS answer could change.
        host: pinned.address,
        family: pinned.family,
        port: pinned.port,
        path: `${url.pathname}${url.search}`,
        method,
        headers: {
          host: url.host,
          ...headers,
          ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}),
        },
        agent: false,
        timeout: opts.idleTimeoutMs,
        ...(opts.signal ? { signal: opts.signal } : {}),
        // Certificates are checked against the name the user gave (SNI is not sent for an IP literal).
        ...(tls && isIP(pinned.hostname) === 0 ? { servername: pinned.hostname } : {}),
        ...(url.username || url.password
          ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` }
          : {}),
      };
      const req = (tls ? https : http).request(options, (res) => {
        res.setTimeout(opts.idleTimeoutMs, () => res.destroy(new Error("timed out")));
        resolve(res);
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(body);
    });
  }
}
