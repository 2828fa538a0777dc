import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

const BLOCKED_V4: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
];

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

function v4Blocked(ip: string): boolean {
  return BLOCKED_V4.some(([base, bits]) => {
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return (v4ToInt(ip) & mask) === (v4ToInt(base) & mask);
  });
}

/** Whether an address is loopback, link-local, private, multicast or otherwise not a public host. */
export function isNonPublicAddress(ip: string): boolean {
  if (isIP(ip) === 4) return v4Blocked(ip);
  const v6 = ip.toLowerCase();
  const mapped = v6.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/);
  if (mapped?.[1]) return v4Blocked(mapped[1]);
  return (
    v6 === "::" ||
    v6 === "::1" ||
    /^fe[89ab]/.test(v6) || // link-local
    /^f[cd]/.test(v6) || // unique local
    /^ff/.test(v6) // multicast
  );
}

export class OutboundBlockedError extends Error {}

/**
 * What the server itself may connect to on a user's behalf (git and tarball sources, registries): public
 * addresses only, so that a request cannot make Sandpit reach its own host, its LAN or a cloud metadata
 * service — except hosts an admin lists (`host` or `host:port`, e.g. an internal git server).
 */
export class OutboundGuard {
  constructor(private readonly allowedHosts: string[]) {}

  private allowed(hostname: string, port: string): boolean {
    const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
    return this.allowedHosts.some((a) => a === host || a === `${host}:${port}`);
  }

  /** Resolves the URL's host and returns the address to connect to; throws when it may not be reached. */
  async check(url: URL): Promise<{ address: string; family: number }> {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = url.port || (url.protocol === "https:" ? "443" : "80");
    const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true });
    const first = addresses[0];
    if (!first) throw new OutboundBlockedError(`${url.hostname} does not resolve`);
    if (this.allowed(url.hostname, port)) return first;
    const bad = addresses.find((a) => isNonPublicAddress(a.address));
    if (bad) {
      throw new OutboundBlockedError(
        `${url.hostname} resolves to ${bad.address}, a non-public address Sandpit does not fetch from ` +
          "(an admin can allow the host with SANDPIT_OUTBOUND_ALLOWED_HOSTS)",
      );
    }
    return first;
  }
}
