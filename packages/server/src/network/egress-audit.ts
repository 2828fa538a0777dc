import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import type { NetworkPolicy } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { EgressLogFilter, EgressLogRecord } from "../domain/index.js";
import { runCommand, tryCommand } from "../lib/run-command.js";
import type { Store } from "../store/store.js";
import type { BrokeredRequest } from "./egress-broker.js";

type Entry = Omit<EgressLogRecord, "seq">;

interface AuditClient {
  orgId: string;
  sandboxId: string;
  policy: NetworkPolicy;
  gateway: string;
}

const FLUSH_MS = 500;
const CONNTRACK_POLL_MS = 3000;

/** Fields of a kernel log line written by an nftables `log` statement (`SRC=… DST=… PROTO=… DPT=…`). */
export function parseNftLog(
  line: string,
  table: string,
): { rule: string; src: string; dst: string; proto: string; sport: number | null; dport: number | null } | undefined {
  const at = line.indexOf(`${table}:`);
  if (at < 0) return undefined;
  const rest = line.slice(at + table.length + 1);
  const rule = rest.split(" ")[0] ?? "";
  const field = (name: string) => new RegExp(`\\b${name}=(\\S+)`).exec(rest)?.[1];
  const src = field("SRC");
  const dst = field("DST");
  if (!rule || !src || !dst) return undefined;
  const dpt = field("DPT");
  const spt = field("SPT");
  return {
    rule,
    src,
    dst,
    proto: (field("PROTO") ?? "").toLowerCase(),
    sport: spt ? Number(spt) : null,
    dport: dpt ? Number(dpt) : null,
  };
}

/** A `conntrack -L` line: protocol, the original direction's tuple, and byte counters both ways. */
export function parseConntrack(line: string):
  | {
      proto: string;
      src: string;
      dst: string;
      sport: number | null;
      dport: number | null;
      bytesOut: number | null;
      bytesIn: number | null;
    }
  | undefined {
  const proto = /^\s*(tcp|udp|icmp)\s/.exec(line)?.[1];
  const first = (name: string) => new RegExp(`\\b${name}=(\\S+)`).exec(line)?.[1];
  const bytes = [...line.matchAll(/\bbytes=(\d+)/g)].map((m) => Number(m[1]));
  const src = first("src");
  const dst = first("dst");
  if (!proto || !src || !dst) return undefined;
  const sport = first("sport");
  const dport = first("dport");
  return {
    proto,
    src,
    dst,
    sport: sport ? Number(sport) : null,
    dport: dport ? Number(dport) : null,
    bytesOut: bytes[0] ?? null,
    bytesIn: bytes[1] ?? null,
  };
}

/** How a plain flow is named in its entry's `detail`, so that byte counts can be added to it later. */
export const flowKey = (proto: string, sport: number | null, ip: string, dport: number | null) =>
  `flow ${proto} :${sport ?? 0} -> ${ip}:${dport ?? 0}`;

/**
 * The egress audit log: every outbound connection attempt of every sandbox. Allowed flows come from
 * conntrack events (one entry when the flow ends, with its byte counts), refused attempts from the
 * firewall's rate-limited kernel log lines (named by the rule that refused them), brokered HTTP(S)
 * requests from the broker (with the domain from SNI/Host) and name lookups from the DNS proxy. Domains
 * of plain flows come from the DNS answers the sandbox got. Entries are written in batches.
 */
export class EgressAudit extends EventEmitter {
  private readonly clients = new Map<string, AuditClient>();
  /** Per sandbox IP: address → the name the sandbox resolved to it. */
  private readonly names = new Map<string, Map<string, string>>();
  /** Last byte total seen per flow, so that unchanged flows are not rewritten. */
  private readonly flowBytes = new Map<string, number>();
  private pending: Entry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private kernelLog: ChildProcess | undefined;
  private stopped = false;
  private kernelLogRestart: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly opts: { table: string; subnet: string; retentionMs: number; log: FastifyBaseLogger },
  ) {
    super();
    this.setMaxListeners(0);
  }

  setClient(sandboxIp: string, client: AuditClient | undefined) {
    if (client) this.clients.set(sandboxIp, client);
    else {
      this.clients.delete(sandboxIp);
      this.names.delete(sandboxIp);
    }
  }

  /** The DNS proxy tells what a sandbox resolved (and what it was refused). */
  recordLookup(sandboxIp: string, name: string, ips: string[], refused: boolean) {
    const client = this.clients.get(sandboxIp);
    if (!client) return;
    let names = this.names.get(sandboxIp);
    if (!names) {
      names = new Map();
      this.names.set(sandboxIp, names);
    }
    for (const ip of ips) names.set(ip, name);
    if (names.size > 10_000) names.clear();
    if (refused) {
      this.push({
        ...this.base(client),
        protocol: "dns",
        ip: null,
        port: 53,
        domain: name,
        decision: "denied",
        rule: "policy.domain",
      });
    }
  }

  recordBrokered(r: BrokeredRequest) {
    this.push({
      orgId: r.orgId,
      sandboxId: r.sandboxId,
      at: Date.now(),
      protocol: r.port === 443 ? "https" : "http",
      ip: r.ip,
      port: r.port,
      domain: r.domain,
      decision: r.decision,
      rule: r.rule,
      bytesOut: r.bytesOut,
      bytesIn: r.bytesIn,
      detail: r.status === null ? null : `HTTP ${r.status}`,
    });
  }

  /** Starts reading conntrack events and the kernel log; safe to call when either is unavailable. */
  async start(): Promise<void> {
    // Byte counts on conntrack entries (they start counting for flows created from now on).
    await tryCommand(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1"]);
    this.startKernelLog();
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    let polling = false;
    this.poller = setInterval(() => {
      if (polling) return;
      polling = true;
      this.pollConntrack()
        .catch((e) => this.opts.log.warn({ err: e }, "egress audit: reading the connection table failed"))
        .finally(() => {
          polling = false;
        });
    }, CONNTRACK_POLL_MS);
  }

  /**
   * Byte counts of allowed flows: the connection table is read every few seconds (closed TCP flows stay
   * in it for two minutes, UDP ones for half a minute) and the counters are added to the flows' entries.
   */
  private async pollConntrack() {
    if (this.clients.size === 0) return;
    const out = await runCommand(["conntrack", "-L", "-f", "ipv4"], { timeoutMs: 10_000 }).catch(() => "");
    if (!out) return;
    const updates: { sandboxId: string; detail: string; bytesOut: number; bytesIn: number }[] = [];
    for (const line of out.split("\n")) {
      const f = parseConntrack(line);
      if (!f || f.bytesOut === null || f.bytesIn === null) continue;
      const client = this.clients.get(f.src);
      if (!client || f.dst === client.gateway) continue;
      const detail = flowKey(f.proto, f.sport, f.dst, f.dport);
      const key = `${client.sandboxId} ${detail}`;
      const seen = this.flowBytes.get(key);
      if (seen === f.bytesOut + f.bytesIn) continue;
      this.flowBytes.set(key, f.bytesOut + f.bytesIn);
      updates.push({ sandboxId: client.sandboxId, detail, bytesOut: f.bytesOut, bytesIn: f.bytesIn });
    }
    if (this.flowBytes.size > 200_000) this.flowBytes.clear();
    if (updates.length) {
      await this.flush();
      await this.store.updateEgressBytes(updates);
    }
  }

  /** New kernel log lines (the firewall's refusals), from `dmesg --follow-new`. */
  private startKernelLog() {
    const child = spawn("dmesg", ["--follow-new", "--notime"], { stdio: ["ignore", "pipe", "ignore"] });
    child.on("error", (e) => this.opts.log.warn({ err: e }, "egress audit: cannot read the kernel log"));
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) this.onKernelLog(line);
    });
    child.on("exit", () => {
      if (!this.stopped) this.kernelLogRestart = setTimeout(() => this.startKernelLog(), 1000);
    });
    this.kernelLog = child;
  }

  private onKernelLog(text: string) {
    const f = parseNftLog(text, this.opts.table);
    if (!f) return;
    const client = this.clients.get(f.src);
    if (!client) return;
    const allowed = f.rule.startsWith("allow.") || f.rule === "mode.allow-all";
    const protocol = f.proto === "tcp" || f.proto === "udp" ? f.proto : "icmp";
    this.push({
      ...this.base(client),
      protocol,
      ip: f.dst,
      port: f.dport,
      domain: this.names.get(f.src)?.get(f.dst) ?? null,
      decision: allowed ? "allowed" : "denied",
      rule: f.rule,
      detail: allowed ? flowKey(protocol, f.sport, f.dst, f.dport) : null,
    });
  }

  private base(client: AuditClient) {
    return {
      orgId: client.orgId,
      sandboxId: client.sandboxId,
      at: Date.now(),
      bytesOut: null,
      bytesIn: null,
      detail: null,
    };
  }

  private push(e: Entry) {
    this.pending.push(e);
    if (this.pending.length > 5000) void this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      await this.store.insertEgressLog(batch);
      this.emit("written");
    } catch (e) {
      this.opts.log.error({ err: e }, "egress audit: write failed");
    }
  }

  list(orgId: string, filter: EgressLogFilter): Promise<EgressLogRecord[]> {
    return this.store.listEgressLog(orgId, filter);
  }

  /** Entries as they are written, after `afterSeq`, until the signal aborts. */
  async *follow(orgId: string, filter: EgressLogFilter, signal: AbortSignal): AsyncGenerator<EgressLogRecord> {
    let after = filter.afterSeq ?? 0;
    while (!signal.aborted) {
      const rows = await this.store.listEgressLog(orgId, { ...filter, afterSeq: after, limit: 1000 });
      for (const r of rows) {
        after = r.seq;
        yield r;
      }
      if (rows.length === 1000) continue;
      await new Promise<void>((resolve) => {
        const done = () => {
          this.off("written", done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.on("written", done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  purge(): Promise<void> {
    return this.store.purgeEgressLog(Date.now() - this.opts.retentionMs);
  }

  close() {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.poller) clearInterval(this.poller);
    // A restart scheduled before close() would start a reader that keeps the stopped server alive.
    if (this.kernelLogRestart) clearTimeout(this.kernelLogRestart);
    this.kernelLog?.kill();
    void this.flush();
  }
}
