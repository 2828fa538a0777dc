import { existsSync } from "node:fs";
import { runCommand, tryCommand } from "../lib/run-command.js";
import type { SandboxAddressing } from "./addressing.js";

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
   * Creates (or replaces) the instance's firewall table. Traffic a sandbox starts towards the host is
   * refused; replies to connections the host opened (the agent channel) pass. Forwarding out of a sandbox
   * is dropped: egress policy opens it per sandbox.
   */
  async installFirewall(): Promise<void> {
    const sandboxes = `"${this.prefix}h*"`;
    const rules = `
table inet ${this.table}
delete table inet ${this.table}
table inet ${this.table} {
  chain input {
    type filter hook input priority -10; policy accept;
    iifname ${sandboxes} ct state established,related accept
    iifname ${sandboxes} meta l4proto tcp reject with tcp reset
    iifname ${sandboxes} reject with icmpx type admin-prohibited
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname ${sandboxes} drop
    oifname ${sandboxes} ct state established,related accept
    oifname ${sandboxes} drop
  }
}
`;
    await runCommand(["nft", "-f", "-"], { input: rules });
  }

  async removeFirewall(): Promise<void> {
    await tryCommand(["nft", "delete", "table", "inet", this.table]);
  }

  /** Creates the namespace and veth pair and configures both ends. Idempotent: leftovers are replaced. */
  async setUp(a: SandboxAddressing): Promise<void> {
    await this.tearDown(a);
    await runCommand(["ip", "netns", "add", a.netns]);
    await runCommand(["ip", "-batch", "-"], {
      input: [
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
