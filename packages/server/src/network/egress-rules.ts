import type { NetworkPolicy } from "@sandpit/contract";
import type { SandboxAddressing } from "./addressing.js";

/** Denied traffic is refused, not silently dropped: programs in the sandbox fail at once. */
const REFUSE = "reject with icmpx type admin-prohibited";

/**
 * Denied attempts are logged (to the kernel log, rate-limited so a flood cannot fill it) with the name
 * of the rule that refused them; the egress audit reads them back. The log rule has no verdict: when
 * the limit is exceeded the packet is still refused by the rule after it, just not logged.
 */
export function logDenied(table: string, rule: string): string {
  return `limit rate 50/second burst 100 packets log prefix "${table}:${rule} " level info`;
}

/** Allowed connections are logged once, on their first packet, under the rule that let them through. */
export function logAllowed(table: string, rule: string): string {
  return `ct state new ${logDenied(table, rule)}`;
}

/**
 * nftables statements for one sandbox's egress policy, applied as one transaction. Pure: the text is
 * unit-tested; `nft -f` applies it.
 *
 * Per sandbox (slot N) the instance table holds a chain `sbN` that the forward hook jumps to (map
 * `egress`, keyed by the host veth), and sets `sbN_allow` (CIDRs), `sbN_deny` (CIDRs) and `sbN_dns`
 * (addresses the DNS proxy admitted, each with the TTL of its record). Deny wins: it is checked first.
 */
export function egressRules(table: string, a: SandboxAddressing, policy: NetworkPolicy): string {
  const t = `inet ${table}`;
  const chain = `sb${a.slot}`;
  const lines = [
    ...declare(t, a),
    `flush chain ${t} ${chain}`,
    `flush set ${t} ${chain}_allow`,
    `flush set ${t} ${chain}_deny`,
    `flush set ${t} ${chain}_dns`,
  ];
  const dnsAllowed = policy.mode !== "deny-all";
  if (policy.mode === "custom") {
    if (policy.deny.cidrs.length) lines.push(`add element ${t} ${chain}_deny { ${policy.deny.cidrs.join(", ")} }`);
    if (policy.allow.cidrs.length) lines.push(`add element ${t} ${chain}_allow { ${policy.allow.cidrs.join(", ")} }`);
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_deny ${logDenied(table, "deny.cidr")}`);
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_deny ${REFUSE}`);
    const ports = policy.allow.ports.length
      ? ` meta l4proto { tcp, udp } th dport { ${policy.allow.ports.join(", ")} }`
      : "";
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_allow${ports} ${logAllowed(table, "allow.cidr")}`);
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_allow${ports} accept`);
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_dns${ports} ${logAllowed(table, "allow.domain")}`);
    lines.push(`add rule ${t} ${chain} ip daddr @${chain}_dns${ports} accept`);
    lines.push(`add rule ${t} ${chain} ${logDenied(table, "policy.default-deny")}`);
    lines.push(`add rule ${t} ${chain} ${REFUSE}`);
  } else if (policy.mode === "allow-all") {
    lines.push(`add rule ${t} ${chain} ${logAllowed(table, "mode.allow-all")}`);
    lines.push(`add rule ${t} ${chain} accept`);
  } else {
    lines.push(`add rule ${t} ${chain} ${logDenied(table, "mode.deny-all")}`);
    lines.push(`add rule ${t} ${chain} ${REFUSE}`);
  }
  // Adding then deleting an element makes the delete safe when it is absent.
  lines.push(`add element ${t} egress { "${a.hostIface}" : jump ${chain} }`);
  lines.push(`add element ${t} dns_clients { "${a.hostIface}" }`);
  if (!dnsAllowed) lines.push(`delete element ${t} dns_clients { "${a.hostIface}" }`);
  lines.push(`add element ${t} brokered { "${a.hostIface}" }`);
  if (!policy.transforms?.length) lines.push(`delete element ${t} brokered { "${a.hostIface}" }`);
  return `${lines.join("\n")}\n`;
}

/** Removes everything `egressRules` created for a sandbox; safe when some of it is absent. */
export function removeEgressRules(table: string, a: SandboxAddressing): string {
  const t = `inet ${table}`;
  const chain = `sb${a.slot}`;
  return `${[
    ...declare(t, a),
    `add element ${t} egress { "${a.hostIface}" : jump ${chain} }`,
    `delete element ${t} egress { "${a.hostIface}" }`,
    `add element ${t} dns_clients { "${a.hostIface}" }`,
    `delete element ${t} dns_clients { "${a.hostIface}" }`,
    `add element ${t} brokered { "${a.hostIface}" }`,
    `delete element ${t} brokered { "${a.hostIface}" }`,
    `flush chain ${t} ${chain}`,
    `delete chain ${t} ${chain}`,
    `delete set ${t} ${chain}_allow`,
    `delete set ${t} ${chain}_deny`,
    `delete set ${t} ${chain}_dns`,
  ].join("\n")}\n`;
}

function declare(t: string, a: SandboxAddressing): string[] {
  const chain = `sb${a.slot}`;
  return [
    `add chain ${t} ${chain}`,
    `add set ${t} ${chain}_allow { type ipv4_addr; flags interval; }`,
    `add set ${t} ${chain}_deny { type ipv4_addr; flags interval; }`,
    `add set ${t} ${chain}_dns { type ipv4_addr; flags timeout; }`,
  ];
}

/** Whether a name matches a pattern: exact, `*.example.com` for any subdomain of example.com, `*` for any. */
export function domainMatches(name: string, pattern: string): boolean {
  if (pattern === "*") return true;
  const n = name.toLowerCase().replace(/\.$/, "");
  if (pattern.startsWith("*.")) return n.endsWith(pattern.slice(1));
  return n === pattern;
}

export type DnsDecision = "forward" | "refuse";

/** What the DNS proxy does with a query from a sandbox with this policy. Deny wins over allow. */
export function dnsDecision(policy: NetworkPolicy, name: string): DnsDecision {
  if (policy.mode === "allow-all") return "forward";
  if (policy.mode === "deny-all") return "refuse";
  if (policy.deny.domains.some((p) => domainMatches(name, p))) return "refuse";
  return policy.allow.domains.some((p) => domainMatches(name, p)) ? "forward" : "refuse";
}
