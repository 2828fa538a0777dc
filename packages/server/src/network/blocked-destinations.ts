import { runCommand } from "../lib/run-command.js";
import { parseIpAddress, parseIpPrefix, prefixContains } from "../outbound/ip-address.js";

/** Addresses no sandbox may reach, whatever its policy says. */
const ALWAYS_BLOCKED = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16", // link-local, cloud metadata (169.254.169.254)
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved and broadcast
];

const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/** Whether an address is inside a CIDR (`a.b.c.d/n` or a single address); never for text that is no address. */
export function cidrContains(cidr: string, ip: string): boolean {
  const address = parseIpAddress(ip);
  return address !== null && prefixContains(parseIpPrefix(cidr), address);
}

/** Whether the broker must not dial this address: in a blocked CIDR, or not an address at all (fail closed). */
export function isBlockedAddress(blockedCidrs: string[], ip: string): boolean {
  return parseIpAddress(ip) === null || blockedCidrs.some((cidr) => cidrContains(cidr, ip));
}

/**
 * The always-blocked list: fixed ranges, the sandbox subnet, and — unless `allowPrivateNetworks` — every
 * private range that one of the host's own networks is in (so a sandbox cannot probe the host's LAN).
 */
export async function blockedDestinations(opts: {
  sandboxSubnet: string;
  netPrefix: string;
  allowPrivateNetworks: boolean;
}): Promise<string[]> {
  const blocked = [...ALWAYS_BLOCKED, `${opts.sandboxSubnet}/16`];
  if (opts.allowPrivateNetworks) return blocked;
  const out = await runCommand(["ip", "-j", "-4", "addr", "show"]);
  const links = JSON.parse(out) as { ifname: string; addr_info?: { local: string }[] }[];
  for (const link of links) {
    if (link.ifname === "lo" || link.ifname.startsWith(`${opts.netPrefix}h`)) continue;
    for (const { local } of link.addr_info ?? []) {
      const range = PRIVATE_RANGES.find((r) => cidrContains(r, local));
      if (range) blocked.push(range);
    }
  }
  return [...new Set(blocked)];
}
