import dgram from "node:dgram";
import type { NetworkPolicy } from "@sandpit/contract";
import dnsPacket from "dns-packet";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SandboxAddressing } from "./addressing.js";
import { rcodeOf } from "./dns-messages.js";
import { DnsProxy } from "./dns-proxy.js";

/**
 * The proxy answers by source address: the test's client socket is the "sandbox" at 127.0.0.1, and its
 * "gateway", where the proxy listens for it, another loopback address.
 */
const sandbox: SandboxAddressing = {
  slot: 0,
  hostIp: "127.0.0.2",
  sandboxIp: "127.0.0.1",
  prefixLength: 30,
  hostIface: "unused",
  sandboxIface: "unused",
  netns: "unused",
};

const policy: NetworkPolicy = {
  mode: "custom",
  allow: { domains: ["allowed.test"], cidrs: [], ports: [] },
  deny: { domains: ["denied.test"], cidrs: [] },
};

/** A loopback DNS server that records every question it receives and answers A records from a table. */
async function fakeUpstream(records: Record<string, dnsPacket.Answer[]>) {
  const seen: string[][] = [];
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    seen.push((q.questions ?? []).map((x) => x.name));
    const name = q.questions?.[0]?.name ?? "";
    const answer = dnsPacket.encode({
      id: q.id ?? 0,
      type: "response",
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions ?? [],
      answers: records[name] ?? [],
    });
    socket.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return { port: socket.address().port, seen, close: () => socket.close() };
}

function ask(port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("message", (answer) => {
      socket.close();
      resolve(answer);
    });
    socket.once("error", reject);
    socket.send(msg, port, sandbox.hostIp);
  });
}

const q = (...names: string[]) =>
  dnsPacket.encode({
    id: 777,
    type: "query",
    flags: dnsPacket.RECURSION_DESIRED,
    questions: names.map((name) => ({ type: "A" as const, name, class: "IN" as const })),
  });

const a = (name: string, data: string): dnsPacket.Answer => ({ type: "A", name, ttl: 60, class: "IN", data });

let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
let proxy: DnsProxy;
let port: number;
let admitted: string[];

beforeEach(async () => {
  upstream = await fakeUpstream({
    "allowed.test": [
      { type: "CNAME", name: "allowed.test", ttl: 60, class: "IN", data: "edge.cdn.test" },
      a("edge.cdn.test", "198.18.0.3"),
      a("elsewhere.test", "198.18.0.66"),
    ],
  });
  admitted = [];
  proxy = new DnsProxy(
    { host: "127.0.0.1", port: upstream.port },
    async (_a, ips) => {
      admitted.push(...ips.map((e) => e.ip));
    },
    pino({ level: "silent" }),
  );
  port = await proxy.start();
  await proxy.setClient(sandbox, policy);
});

afterEach(() => {
  proxy.close();
  upstream.close();
});

describe("the DNS proxy", () => {
  it("answers a denied name with NXDOMAIN in the header, without asking upstream", async () => {
    const answer = await ask(port, q("denied.test"));
    expect(rcodeOf(answer)).toBe("NXDOMAIN");
    expect(dnsPacket.decode(answer).id).toBe(777);
    expect(upstream.seen).toEqual([]);
  });

  it("refuses a query with a denied second question (FORMERR): nothing reaches the upstream", async () => {
    const answer = await ask(port, q("allowed.test", "denied.test"));
    expect(rcodeOf(answer)).toBe("FORMERR");
    // The proxy answers each datagram in order: once this one is answered, the earlier one was handled.
    expect(rcodeOf(await ask(port, q("denied.test")))).toBe("NXDOMAIN");
    expect(upstream.seen).toEqual([]);
    expect(admitted).toEqual([]);
  });

  it("forwards one question, passes on and admits only the asked name's CNAME chain", async () => {
    const answer = dnsPacket.decode(await ask(port, q("allowed.test")));
    expect(upstream.seen).toEqual([["allowed.test"]]);
    expect(answer.id).toBe(777);
    expect(answer.answers?.map((r) => `${r.name} ${r.type}`)).toEqual(["allowed.test CNAME", "edge.cdn.test A"]);
    expect(admitted).toEqual(["198.18.0.3"]);
  });
});
