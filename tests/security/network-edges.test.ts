// Edges of the network layer a sandbox could push on: what the DNS proxy answers and forwards, who can
// reach the egress broker, and what the server leaves on the host when it stops.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody } from "../helpers/api.js";
import { type FakeInternet, startFakeInternet } from "../helpers/fake-internet.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const run = promisify(execFile);
const N = 47;

let net: FakeInternet;
let server: TestServer;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  net = await startFakeInternet(N);
  server = await startTestServer({ SANDPIT_DNS_UPSTREAM: net.ip.dns });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await net?.close();
});

/**
 * Sends one UDP DNS query (type A) with the given questions from inside a sandbox and prints the
 * response's rcode and answer count, or "none" when nothing came back.
 */
const DNS_QUERY = `
import socket, struct, sys
server, names = sys.argv[1], sys.argv[2:]
def name(n):
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\\0"
query = struct.pack(">HHHHHH", 0x4242, 0x0100, len(names), 0, 0, 0)
query += b"".join(name(n) + struct.pack(">HH", 1, 1) for n in names)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query, (server, 53))
try:
    r = s.recvfrom(4096)[0]
    print(r[3] & 15, struct.unpack(">H", r[6:8])[0])
except Exception:
    print("none")
`;

async function dnsQuery(sandboxId: string, server: string, ...names: string[]): Promise<string> {
  const r = await api.exec(sandboxId, { args: ["python3", "-c", DNS_QUERY, server, ...names] });
  return r.stdout.trim();
}

/** Prints, per port, whether a TCP connection from inside the sandbox was accepted or refused. */
const CONNECT = `
import socket, sys
for port in sys.argv[2:]:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((sys.argv[1], int(port)))
        print("open")
    except ConnectionRefusedError:
        print("refused")
    except Exception as e:
        print(type(e).__name__)
`;

async function connect(sandboxId: string, host: string, ...ports: number[]): Promise<string[]> {
  const r = await api.exec(sandboxId, { args: ["python3", "-c", CONNECT, host, ...ports.map(String)] });
  return r.stdout.trim().split("\n");
}

async function gatewayOf(sandboxId: string): Promise<string> {
  const r = await api.exec(sandboxId, { command: "ip route | awk '/default/ {print $3}'" });
  return r.stdout.trim();
}

/** The local addresses the server process listens on (TCP) or is bound to unconnected (UDP). */
async function listeningAddresses(protocol: "tcp" | "udp"): Promise<string[]> {
  const { stdout } = await run("ss", [protocol === "tcp" ? "-Hltnp" : "-Hlunp"]);
  return stdout
    .split("\n")
    .filter((line) => line.includes(`pid=${server.pid},`))
    .map((line) => line.trim().split(/\s+/)[3] ?? "");
}

const onEveryAddress = (address: string) => /^(0\.0\.0\.0|\*|\[::\]):/.test(address);

const RCODE = { NOERROR: "0", FORMERR: "1", NXDOMAIN: "3" };

describe("DNS proxy", () => {
  let sandbox: SandboxBody;
  let gateway: string;

  beforeAll(async () => {
    sandbox = await api.createSandbox({
      networkPolicy: { mode: "custom", allow: { domains: ["allowed.test"] }, deny: { domains: ["denied.test"] } },
    });
    gateway = await gatewayOf(sandbox.id);
  });

  it("answers denied and unlisted names with NXDOMAIN in the header, not an empty NOERROR", async () => {
    expect(await dnsQuery(sandbox.id, gateway, "denied.test")).toBe(`${RCODE.NXDOMAIN} 0`);
    expect(await dnsQuery(sandbox.id, gateway, "web.test")).toBe(`${RCODE.NXDOMAIN} 0`);
    // Sent to another resolver, the query is redirected to the proxy and gets the same answer.
    expect(await dnsQuery(sandbox.id, net.ip.dns, "denied.test")).toBe(`${RCODE.NXDOMAIN} 0`);
    expect(await dnsQuery(sandbox.id, gateway, "allowed.test")).toBe(`${RCODE.NOERROR} 1`);
  });

  it("listens only on the gateways of sandboxes that may use DNS, on no other address of the host", async () => {
    const denyAll = await api.createSandbox({ networkPolicy: { mode: "deny-all" } });
    const denyAllGateway = await gatewayOf(denyAll.id);
    const bound = await listeningAddresses("udp");
    expect(bound.filter(onEveryAddress)).toEqual([]);
    expect(bound.some((address) => address.startsWith(`${gateway}:`))).toBe(true);
    expect(bound.some((address) => address.startsWith(`${denyAllGateway}:`))).toBe(false);
  });

  it("refuses a query with a denied second question (FORMERR): it never reaches the upstream", async () => {
    expect(await dnsQuery(sandbox.id, gateway, "allowed.test", "denied.test")).toBe(`${RCODE.FORMERR} 0`);
    expect(await dnsQuery(sandbox.id, net.ip.dns, "allowed.test", "denied.test")).toBe(`${RCODE.FORMERR} 0`);
    // A single allowed question does reach the upstream, so its log is being written.
    const before = (await net.dnsQueries()).length;
    expect(await dnsQuery(sandbox.id, gateway, "allowed.test")).toBe(`${RCODE.NOERROR} 1`);
    const queries = await net.dnsQueries();
    expect(queries.slice(before)).toEqual([["allowed.test"]]);
    expect(queries.every((q) => q.length === 1)).toBe(true);
    expect(queries.flat()).not.toContain("denied.test");
  });
});

describe("egress broker", () => {
  it("listens only on brokered sandboxes' gateways; nftables refuses every other sandbox at its port", async () => {
    const transforms = [{ domain: "api.upstream.test", injectHeaders: { authorization: "Bearer secret" } }];
    const [brokered, denyAll, plain] = await Promise.all([
      api.createSandbox({ networkPolicy: { mode: "allow-all", transforms } }),
      api.createSandbox({ networkPolicy: { mode: "deny-all" } }),
      api.createSandbox({ networkPolicy: { mode: "allow-all" } }),
    ]);
    const brokeredGateway = await gatewayOf(brokered.id);
    const listening = await listeningAddresses("tcp");
    // Nothing of the server listens on every address of the host (the test server's API is on loopback).
    expect(listening.filter(onEveryAddress)).toEqual([]);
    const brokerPort = Number(listening.find((address) => address.startsWith(`${brokeredGateway}:`))?.split(":")[1]);
    expect(brokerPort).toBeGreaterThan(0);
    expect(listening).toContain(`127.0.0.1:${brokerPort}`);
    expect(await connect(brokered.id, brokeredGateway, 443)).toEqual(["open"]);
    for (const other of [denyAll, plain]) {
      const own = await gatewayOf(other.id);
      // Refused by nftables (a TCP reset before any handshake), not accepted and then dropped by the broker;
      // TCP DNS to the gateway is refused the same way (the proxy answers UDP only).
      expect(await connect(other.id, own, 443, 80, brokerPort, 53)).toEqual([
        "refused",
        "refused",
        "refused",
        "refused",
      ]);
      expect(await connect(other.id, brokeredGateway, 443, brokerPort)).toEqual(["refused", "refused"]);
    }
    // Without transforms any more, the sandbox's gateway has no broker either.
    const changed = await api.call("PUT", `/v1/sandboxes/${brokered.id}/network-policy`, { mode: "allow-all" });
    expect(changed.status).toBe(200);
    expect(await connect(brokered.id, brokeredGateway, 443, brokerPort)).toEqual(["refused", "refused"]);
    const after = (await run("ss", ["-Hltn", `src ${brokeredGateway}`])).stdout;
    expect(after.trim()).toBe("");
  });
});

describe("a normal stop", () => {
  it("removes the server's nftables table once no sandbox is left, and keeps it for sandboxes that run on", async () => {
    const own = await startTestServer({ SANDPIT_DNS_UPSTREAM: net.ip.dns });
    const ownApi = apiClient(own);
    const table = ["list", "table", "inet", `sandpit_${own.netPrefix}`];
    const tableExists = () =>
      run("nft", table).then(
        () => true,
        () => false,
      );
    try {
      const sandbox = await ownApi.createSandbox({ networkPolicy: { mode: "deny-all" } });
      await own.stop();
      // The sandbox keeps running while the server is down: the table is what keeps it confined.
      const kept = await run("nft", table);
      expect(kept.stdout).toContain(`"${own.netPrefix}h`);
      await own.restart();
      const after = await ownApi.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
      expect(after.body.status).toBe("running");
      const blocked = await ownApi.exec(sandbox.id, {
        command: `curl -s -o /dev/null -m 3 -w '%{http_code}' http://${net.ip.web}/ || true`,
      });
      expect(blocked.stdout.trim()).toBe("000");
      expect((await ownApi.del(`/v1/sandboxes/${sandbox.id}`)).status).toBeLessThan(300);
      expect(await tableExists()).toBe(true);
      await own.stop();
      expect(await tableExists()).toBe(false);
    } finally {
      await own.close();
    }
  });
});
