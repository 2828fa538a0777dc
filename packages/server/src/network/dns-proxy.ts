import { randomInt } from "node:crypto";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import type { NetworkPolicy } from "@sandpit/contract";
import type dnsPacket from "dns-packet";
import type { FastifyBaseLogger } from "fastify";
import type { SandboxAddressing } from "./addressing.js";
import {
  addressesOf,
  answersFor,
  checkQuery,
  isRejected,
  type Rcode,
  readUpstreamAnswer,
  response,
  type UpstreamQuestion,
  upstreamQuery,
} from "./dns-messages.js";
import { transformFor } from "./egress-broker.js";
import { dnsDecision } from "./egress-rules.js";
import { GatewayListeners } from "./gateway-listeners.js";

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
 * answers, so the connection that follows is already allowed. Only the one checked question of a query
 * goes upstream (see `checkQuery`), and only the records of that name and its CNAME chain come back.
 */
export class DnsProxy {
  private readonly clients = new Map<string, Client>();
  private readonly listeners = new GatewayListeners<dgram.Socket>({
    open: (host, port) => {
      const socket = dgram.createSocket("udp4");
      socket.on("message", (msg, rinfo) => {
        this.handle(socket, msg, rinfo).catch((e) => this.log.warn({ err: e }, "dns query failed"));
      });
      return new Promise((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(port, host, () => {
          socket.off("error", reject);
          resolve(socket);
        });
      });
    },
    portOf: (socket) => socket.address().port,
    close: (socket) => socket.close(),
  });

  constructor(
    private readonly upstream: DnsUpstream,
    private readonly admit: (a: SandboxAddressing, ips: { ip: string; ttlSeconds: number }[]) => Promise<void>,
    private readonly log: FastifyBaseLogger,
    /** Told every name a sandbox looked up: what it resolved to, or that the policy refused it. */
    private readonly onLookup?: (sandboxIp: string, name: string, ips: string[], refused: boolean) => void,
  ) {}

  /**
   * Reserves the proxy's UDP port and returns it. The proxy listens only on the gateways of sandboxes
   * whose policy lets them use DNS (`setClient`), on no other address of the host.
   */
  start(): Promise<number> {
    return this.listeners.reserve();
  }

  /** Serves a sandbox with this policy (deny-all: not at all — the firewall keeps its DNS off the host too). */
  async setClient(addressing: SandboxAddressing, policy: NetworkPolicy): Promise<void> {
    if (policy.mode === "deny-all") return this.removeClient(addressing);
    this.clients.set(addressing.sandboxIp, { addressing, policy });
    await this.listeners.add(addressing.hostIp);
  }

  async removeClient(addressing: SandboxAddressing): Promise<void> {
    this.clients.delete(addressing.sandboxIp);
    await this.listeners.remove(addressing.hostIp);
  }

  private async handle(socket: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo) {
    // Only sandboxes are answered; anything else that reaches the port is ignored.
    const client = this.clients.get(rinfo.address);
    if (!client) return;
    const send = (answer: Buffer) => socket.send(answer, rinfo.port, rinfo.address);
    const query = checkQuery(msg);
    if (isRejected(query)) {
      if (query.id !== undefined) send(response({ id: query.id, question: query.question }, query.rcode));
      return;
    }
    const { question } = query;
    if (dnsDecision(client.policy, question.name) === "refuse") {
      this.onLookup?.(rinfo.address, question.name, [], true);
      return send(response(query, "NXDOMAIN"));
    }
    // A domain with transforms resolves to the sandbox's gateway, where the egress broker listens.
    if (transformFor(client.policy.transforms ?? [], question.name.toLowerCase().replace(/\.$/, ""))) {
      const answers: dnsPacket.Answer[] =
        question.type === "A"
          ? [{ type: "A", name: question.name, ttl: 30, class: "IN", data: client.addressing.hostIp }]
          : [];
      return send(response(query, "NOERROR", { answers }));
    }
    let upstream: { rcode: Rcode; packet: dnsPacket.DecodedPacket };
    try {
      upstream = await this.ask(query);
    } catch {
      return send(response(query, "SERVFAIL"));
    }
    const answers = answersFor(question, upstream.packet.answers ?? []);
    const ips = addressesOf(answers);
    if (client.policy.mode === "custom") await this.admit(client.addressing, ips);
    this.onLookup?.(
      rinfo.address,
      question.name,
      ips.map((e) => e.ip),
      false,
    );
    // The zone's SOA lets the sandbox cache a negative answer; other authority records are not its business.
    const authorities = (upstream.packet.authorities ?? []).filter((a) => a.type === "SOA");
    send(response(query, upstream.rcode, { answers, authorities, flags: upstream.packet.flags ?? 0 }));
  }

  /** The IPv4 addresses of a name, from the same upstream the sandboxes' queries go to. */
  async resolve(name: string): Promise<string[]> {
    const question: dnsPacket.Question = { type: "A", name, class: "IN" };
    const answer = await this.ask({ question, flags: 0, edns: undefined });
    return addressesOf(answersFor(question, answer.packet.answers ?? [])).map((a) => a.ip);
  }

  /**
   * Sends the query's one question upstream under a fresh id, from a socket of its own connected to the
   * upstream (the kernel passes on only the upstream's datagrams), and waits for the one that answers it.
   */
  private ask(query: UpstreamQuestion): Promise<{ rcode: Rcode; packet: dnsPacket.DecodedPacket }> {
    const id = randomInt(65_536);
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket("udp4");
      let settled = false;
      const done = (e: Error | undefined, answer?: { rcode: Rcode; packet: dnsPacket.DecodedPacket }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.close();
        if (answer) resolve(answer);
        else reject(e);
      };
      const timer = setTimeout(() => done(new Error("upstream DNS timed out")), UPSTREAM_TIMEOUT_MS);
      socket.on("message", (msg) => {
        const answer = readUpstreamAnswer(msg, id, query.question);
        if (answer) done(undefined, answer);
      });
      socket.on("error", (e) => done(e));
      socket.connect(this.upstream.port, this.upstream.host, () => socket.send(upstreamQuery(query, id)));
    });
  }

  close() {
    this.listeners.close();
  }
}
