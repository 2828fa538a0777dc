import { type IpBytes, type IpPrefix, parseIpPrefix, prefixContains } from "./ip-address.js";

/** Why an address is refused, or null when it is a public unicast address. */
export type AddressVerdict = { public: true } | { public: false; reason: string };

const ranges = (list: [string, string][]): [IpPrefix, string][] => list.map(([p, why]) => [parseIpPrefix(p), why]);

/** IPv4 networks that are not public unicast hosts (IANA special-purpose registry and the rest of the classes). */
const NON_PUBLIC_V4 = ranges([
  ["0.0.0.0/8", "unspecified (this network)"],
  ["10.0.0.0/8", "private"],
  ["100.64.0.0/10", "shared address space (CGNAT)"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local (cloud metadata)"],
  ["172.16.0.0/12", "private"],
  ["192.0.0.0/24", "IETF protocol assignments"],
  ["192.0.2.0/24", "documentation"],
  ["192.88.99.0/24", "6to4 relay anycast"],
  ["192.168.0.0/16", "private"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation"],
  ["203.0.113.0/24", "documentation"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved or broadcast"],
]);

/** Only global unicast space is public IPv6; everything outside 2000::/3 is refused by that alone. */
const GLOBAL_UNICAST_V6 = parseIpPrefix("2000::/3");

/** Parts of 2000::/3 that are not plain public hosts, or that tunnel to an IPv4 address of their choice. */
const NON_PUBLIC_V6 = ranges([
  ["2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"],
  ["2001:db8::/32", "documentation"],
  ["2002::/16", "6to4 (tunnels to an embedded IPv4 address)"],
  ["3fff::/20", "documentation"],
]);

/** IPv6 forms whose last 32 bits are an IPv4 destination: judged by that IPv4 address. */
const EMBEDS_V4 = ranges([
  ["::ffff:0:0/96", "IPv4-mapped"],
  ["64:ff9b::/96", "NAT64"],
]);

/** Names of the refused IPv6 forms outside 2000::/3, for messages. */
const NAMED_V6 = ranges([
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["::/96", "IPv4-compatible"],
  ["::ffff:0:0:0/96", "SIIT (IPv4-translated)"],
  ["64:ff9b:1::/48", "local-use NAT64"],
  ["fc00::/7", "unique local"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local"],
  ["ff00::/8", "multicast"],
]);

function firstMatch(list: [IpPrefix, string][], address: IpBytes): string | undefined {
  return list.find(([prefix]) => prefixContains(prefix, address))?.[1];
}

/**
 * Whether the server may connect to this address on a user's behalf: only public unicast addresses, and
 * none of `alsoRefused` (the sandbox subnet, the host's own addresses). IPv6 forms that carry an IPv4
 * destination are judged by that destination; tunnels that would reach one of their choosing are refused.
 */
export function classifyAddress(address: IpBytes, alsoRefused: [IpPrefix, string][] = []): AddressVerdict {
  const own = firstMatch(alsoRefused, address);
  if (own) return { public: false, reason: own };
  if (address.length === 4) {
    const why = firstMatch(NON_PUBLIC_V4, address);
    return why ? { public: false, reason: why } : { public: true };
  }
  const embedding = firstMatch(EMBEDS_V4, address);
  if (embedding) {
    const inner = classifyAddress(address.slice(12), alsoRefused);
    return inner.public ? inner : { public: false, reason: `${embedding} ${inner.reason}` };
  }
  if (!prefixContains(GLOBAL_UNICAST_V6, address)) {
    // The most specific name wins (::1 is loopback before it is IPv4-compatible).
    const named = NAMED_V6.filter(([prefix]) => prefixContains(prefix, address)).sort((a, b) => b[0].bits - a[0].bits);
    return { public: false, reason: named[0]?.[1] ?? "reserved" };
  }
  const why = firstMatch(NON_PUBLIC_V6, address);
  return why ? { public: false, reason: why } : { public: true };
}
