import { runCommand } from "../lib/run-command.js";

/** Addresses no sandbox may reach, whatever its policy says. */
const ALWAYS_BLOCKED = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16", // link-local, cloud metadata (169.254.169.254)
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved and broadcast
];

const PRIVATE_RANGES: [string, number][] = [
  ["10.0.0.0", 8],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["100.64.0.0", 10],
];

function toInt(ip: string): number {
  return ip.split(".").reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

function inRange(ip: string, [base, bits]: [string, number]): boolean {
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toInt(ip) & mask) === (toInt(base) & mask);
}

/** Whether an IPv4 address is inside a CIDR (`a.b.c.d/n` or a single address). */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base = "", bits = "32"] = cidr.split("/");
  return inRange(ip, [base, Number(bits)]);
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
      const range = PRIVATE_RANGES.find((r) => inRange(local, r));
      if (range) blocked.push(`${range[0]}/${range[1]}`);
    }
  }
  return [...new Set(blocked)];
}
