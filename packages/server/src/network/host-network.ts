import { existsSync } from "node:fs";
import type { NetworkPolicy } from "@sandpit/contract";
import { runCommand, tryCommand } from "../lib/run-command.js";
import type { SandboxAddressing } from "./addressing.js";
import { egressRules, logDenied, removeEgressRules } from "./egress-rules.js";

/**
 * Network namespaces and veth pairs of sandboxes, and the host firewall that keeps sandboxes away from
 * the host and from each other. Rules live in one nftables table per server instance.
 */
export class HostNetwork {
  readonly table: string;

  constructor(private readonly prefix: string) {
    this.table = `sandpit_${prefix.replace(/[^A-Za-z0-9_]/g, "_")}`;
  }

  /**
   * Creates (or replaces) the instance's firewall table:
   * - a sandbox may not open connections to the host, except DNS to the DNS proxy (redirected from
   *   port 53 of its gateway) when its policy allows DNS (`dns_clients`), and HTTP(S) to its gateway,
   *   redirected to the egress broker, when its policy has transforms (`brokered`): other sandboxes
   *   are refused at the broker's port as at every other port of the host;
   * - forwarded traffic from a sandbox is dropped when it goes to an always-blocked address (link-local
   *   and metadata, the sandbox subnet, the host's private networks, multicast), otherwise it jumps to
   *   the sandbox's own egress chain (map `egress`), and anything without a chain is dropped;
   * - allowed traffic leaves through NAT.
   */
  async installFirewall(opts: {
    subnet: string;
    dnsPort: number;
    brokerPort: number;
    blockedCidrs: string[];
  }): Promise<void> {
    const sandboxes = `"${this.prefix}h*"`;
    const t = `inet ${this.table}`;
    const rules = `
table ${t}
delete table ${t}
table ${t} {
  set blocked4 {
    type ipv4_addr; flags interval; auto-merge;
    elements = { ${opts.blockedCidrs.join(", ")} }
  }
  set dns_clients { type ifname; }
  set brokered { type ifname; }
  map egress { type ifname : verdict; }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname ${sandboxes} udp dport 53 redirect to :${opts.dnsPort}
    iifname @brokered tcp dport { 80, 443 } fib daddr type local redirect to :${opts.brokerPort}
  }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname ${sandboxes} ct state established,related accept
    iifname ${sandboxes} udp dport ${opts.dnsPort} iifname @dns_clients accept
    iifname ${sandboxes} tcp dport ${opts.brokerPort} iifname @brokered accept
    iifname ${sandboxes} ${logDenied(this.table, "host")}
    iifname ${sandboxes} meta l4proto tcp reject with tcp reset
    iifname ${sandboxes} reject with icmpx type admin-prohibited
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname ${sandboxes} ip daddr @blocked4 ${logDenied(this.table, "always-blocked")}
    iifname ${sandboxes} ip daddr @blocked4 reject with icmpx type admin-prohibited
    iifname ${sandboxes} meta nfproto ipv6 drop
    iifname ${sandboxes} iifname vmap @egress
    iifname ${sandboxes} drop
    oifname ${sandboxes} ct state established,related accept
    oifname ${sandboxes} drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${opts.subnet}/16 oifname != ${sandboxes} masquerade
  }
}
`;
    await runCommand(["nft", "-f", "-"], { input: rules });
    // NAT needs forwarding; the forward chain above decides what a sandbox may reach.
    await runCommand(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  }

  /** Applies (atomically) or removes a sandbox's egress policy. */
  async applyEgress(a: SandboxAddressing, policy: NetworkPolicy): Promise<void> {
    await runCommand(["nft", "-f", "-"], { input: egressRules(this.table, a, policy) });
  }

  async removeEgress(a: SandboxAddressing): Promise<void> {
    await tryCommand(["nft", "-f", "-"], { input: removeEgressRules(this.table, a) });
  }

  /** Lets a sandbox reach addresses its DNS proxy resolved for it, for the records' TTL. */
  async admitResolved(a: SandboxAddressing, ips: { ip: string; ttlSeconds: number }[]): Promise<void> {
    if (!ips.length) return;
    const set = `inet ${this.table} sb${a.slot}_dns`;
    // add + delete + add: refreshes the timeout of an address that is already admitted.
    const script = ips
      .map((e) => {
        const ttl = Math.max(5, Math.min(e.ttlSeconds, 86_400));
        return `add element ${set} { ${e.ip} }\ndelete element ${set} { ${e.ip} }\nadd element ${set} { ${e.ip} timeout ${ttl}s }`;
      })
      .join("\n");
    await runCommand(["nft", "-f", "-"], { input: `${script}\n` });
  }

  async removeFirewall(): Promise<void> {
    await tryCommand(["nft", "delete", "table", "inet", this.table]);
  }

  /**
   * Removes the firewall table when no sandbox of this instance has a network any more. Sandboxes keep
   * running while the server is stopped, and the table is what keeps them off the host, the LAN and each
   * other meanwhile (without it, forwarding stays on and nothing would filter them): it stays with them.
   */
  async removeFirewallIfUnused(): Promise<boolean> {
    if ((await this.existingSlots()).length > 0) return false;
    await this.removeFirewall();
    return true;
  }

  /** Creates the namespace and veth pair and configures both ends. Idempotent: leftovers are replaced. */
  async setUp(a: SandboxAddressing): Promise<void> {
    // Leftovers of a slot are rare (a crash mid-destroy): look before spawning commands to remove them.
    // Egress rules need no check: applyEgress replaces the slot's rules before anything of the user runs.
    if (existsSync(`/run/netns/${a.netns}`) || existsSync(`/sys/class/net/${a.hostIface}`)) await this.tearDown(a);
    await runCommand(["ip", "-batch", "-"], {
      input: [
        `netns add ${a.netns}`,
        `link add ${a.hostIface} type veth peer name ${a.sandboxIface} netns ${a.netns}`,
        `addr add ${a.hostIp}/${a.prefixLength} dev ${a.hostIface}`,
        `link set ${a.hostIface} up`,
      ].join("\n"),
    });
    await this.configureSandboxEnd(a);
  }

  /**
   * Gives the sandbox end its address and route. runsc takes the interface over and strips its
   * addresses from the namespace, so this runs again before every start or restore.
   */
  async configureSandboxEnd(a: SandboxAddressing): Promise<void> {
    await runCommand(["ip", "-n", a.netns, "-batch", "-"], {
      input: [
        `addr replace ${a.sandboxIp}/${a.prefixLength} dev ${a.sandboxIface}`,
        `link set ${a.sandboxIface} up`,
        "link set lo up",
        `route replace default via ${a.hostIp} dev ${a.sandboxIface}`,
      ].join("\n"),
    });
  }

  async tearDown(a: SandboxAddressing): Promise<void> {
    await this.removeEgress(a);
    if (existsSync(`/run/netns/${a.netns}`)) await tryCommand(["ip", "netns", "delete", a.netns]);
    await tryCommand(["ip", "link", "delete", a.hostIface]);
  }

  netnsPath(a: SandboxAddressing): string {
    return `/run/netns/${a.netns}`;
  }

  /** Namespaces of this instance that exist on the host, by slot. */
  async existingSlots(): Promise<number[]> {
    const out = await runCommand(["ip", "netns", "list"]);
    const re = new RegExp(`^${this.prefix}-sandbox-(\\d+)\\b`);
    const slots: number[] = [];
    for (const line of out.split("\n")) {
      const m = re.exec(line.trim());
      if (m?.[1]) slots.push(Number(m[1]));
    }
    return slots;
  }
}
