/** Each sandbox gets a /30 out of the sandbox subnet: .1 is the host end of its veth, .2 the sandbox. */
export interface SandboxAddressing {
  slot: number;
  hostIp: string;
  sandboxIp: string;
  prefixLength: 30;
  /** Host-side veth name (≤ 15 characters). */
  hostIface: string;
  /** Sandbox-side veth name, inside the namespace. */
  sandboxIface: string;
  netns: string;
}

export const MAX_SLOTS = 16_384;

function ipToInt(ip: string): number {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

export function intToIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The addresses and interface names of one slot; `prefix` keeps several servers on one host apart. */
export function addressingFor(subnet: string, prefix: string, slot: number): SandboxAddressing {
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_SLOTS) throw new Error(`slot out of range: ${slot}`);
  const base = ipToInt(subnet) + slot * 4;
  return {
    slot,
    hostIp: intToIp(base + 1),
    sandboxIp: intToIp(base + 2),
    prefixLength: 30,
    hostIface: `${prefix}h${slot}`,
    sandboxIface: `${prefix}s${slot}`,
    netns: `${prefix}-sandbox-${slot}`,
  };
}
