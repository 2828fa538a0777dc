import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import type { NetworkPolicy } from "@sandpit/contract";
import dnsPacket from "dns-packet";
import type { FastifyBaseLogger } from "fastify";
import type { SandboxAddressing } from "./addressing.js";
import { transformFor } from "./egress-broker.js";
import { dnsDecision } from "./egress-rules.js";

export interface DnsUpstream {
  host: string;
  port: number;
}

interface Client {
  addressing: SandboxAddressing;
  policy: NetworkPolicy;
}

const UPSTREAM_TIMEOUT_MS = 3000;

/** The first nameserver of the host's resolv.conf. */
export function hostUpstream(): DnsUpstream {
  const conf = readFileSync("/etc/resolv.conf", "utf8");
  const host = /^nameserver\s+(\d+\.\d+\.\d+\.\d+)/m.exec(conf)?.[1] ?? "127.0.0.1";
  return { host, port: 53 };
}

/**
 * The resolver of every sandbox: all UDP DNS a sandbox sends (to any address) is redirected here by the
 * firewall. It answers only names the sandbox's policy allows — others get NXDOMAIN — and, for custom
 * policies, admits the resolved addresses to the sandbox's allow set for the records' TTL before it
 * answers, so the connection that follows is already allowed.
 */
export class DnsProxy {
  private socket: dgram.Socket | undefined;
  private readonly clients = new Map<string, Client>();

  constructor(
    private readonly upstream: DnsUpstream,
    private readonly admit: (a: SandboxAddressing, ips: { ip: string; ttlSeconds: number }[]) => Promise<void>,
    private readonly log: FastifyBaseLogger,
    /** Told every name a sandbox looked up: what it resolved to, or that the policy refused it. */
    private readonly onLookup?: (sandboxIp: string, name: string, ips: string[], refused: boolean) => void,
  ) {}

  /** Listens on a free UDP port and returns it. */
  async start(): Promise<number> {
    const socket = dgram.createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
      this.handle(msg, rinfo).catch((e) => this.log.warn({ err: e }, "dns query failed"));
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, "0.0.0.0", () => resolve());
    });
    this.socket = socket;
    return socket.address().port;
  }

  setClient(addressing: SandboxAddressing, policy: NetworkPolicy) {
    this.clients.set(addressing.sandboxIp, { addressing, policy });
  }

  removeClient(sandboxIp: string) {
    this.clients.delete(sandboxIp);
  }

  private async handle(msg: Buffer, rinfo: dgram.RemoteInfo) {
    // Only sandboxes are answered; anything else that reaches the port is ignored.
    const client = this.clients.get(rinfo.address);
    if (!client) return;
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return this.reply(rinfo, query, "FORMERR");
    if (dnsDecision(client.policy, question.name) === "refuse") {
      this.onLookup?.(rinfo.address, question.name, [], true);
      return this.reply(rinfo, query, "NXDOMAIN");
    }
    // A domain with transforms resolves to the sandbox's gateway, where the egress broker listens.
    if (transformFor(client.policy.transforms ?? [], question.name.toLowerCase().replace(/\.$/, ""))) {
      return this.steer(rinfo, query, question, client.addressing.hostIp);
    }
    let answer: Buffer;
    try {
      answer = await this.askUpstream(msg);
    } catch {
      return this.reply(rinfo, query, "SERVFAIL");
    }
    const decoded = dnsPacket.decode(answer);
    const ips = (decoded.answers ?? [])
      .filter((a): a is dnsPacket.StringAnswer => a.type === "A")
      .map((a) => ({ ip: a.data, ttlSeconds: a.ttl ?? 60 }));
    if (client.policy.mode === "custom") await this.admit(client.addressing, ips);
    this.onLookup?.(
      rinfo.address,
      question.name,
      ips.map((e) => e.ip),
      false,
    );
    this.socket?.send(answer, rinfo.port, rinfo.address);
  }

  private steer(rinfo: dgram.RemoteInfo, query: dnsPacket.Packet, question: dnsPacket.Question, gateway: string) {
    const answers =
      question.type === "A"
        ? [{ type: "A" as const, name: question.name, ttl: 30, class: "IN" as const, data: gateway }]
        : [];
    const response = dnsPacket.encode({
      id: query.id ?? 0,
      type: "response",
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: query.questions ?? [],
      answers,
    } as dnsPacket.Packet);
    this.socket?.send(response, rinfo.port, rinfo.address);
  }

  /** The IPv4 addresses of a name, from the same upstream the sandboxes' queries go to. */
  async resolve(name: string): Promise<string[]> {
    const query = dnsPacket.encode({
      id: Math.floor(Math.random() * 65_535),
      type: "query",
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: "A", name, class: "IN" }],
    } as dnsPacket.Packet);
    const answer = dnsPacket.decode(await this.askUpstream(query));
    return (answer.answers ?? []).filter((a): a is dnsPacket.StringAnswer => a.type === "A").map((a) => a.data);
  }

  private reply(rinfo: dgram.RemoteInfo, query: dnsPacket.Packet, rcode: "NXDOMAIN" | "SERVFAIL" | "FORMERR") {
    const response = dnsPacket.encode({
      id: query.id ?? 0,
      type: "response",
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      rcode,
      questions: query.questions ?? [],
      answers: [],
    } as dnsPacket.Packet);
    this.socket?.send(response, rinfo.port, rinfo.address);
  }

  private askUpstream(msg: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket("udp4");
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error("upstream DNS timed out"));
      }, UPSTREAM_TIMEOUT_MS);
      socket.once("message", (answer) => {
        clearTimeout(timer);
        socket.close();
        resolve(answer);
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        socket.close();
        reject(e);
      });
      socket.send(msg, this.upstream.port, this.upstream.host);
    });
  }

  close() {
    this.socket?.close();
  }
}
