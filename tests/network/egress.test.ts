import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { type FakeInternet, startFakeInternet } from "../helpers/fake-internet.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let net: FakeInternet;

beforeAll(async () => {
  net = await startFakeInternet(41);
  server = await startTestServer({ SANDPIT_DNS_UPSTREAM: net.ip.dns });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await net?.close();
});

/** HTTP status code of a GET from inside the sandbox, "000" when no connection could be made. */
async function httpCode(id: string, url: string): Promise<string> {
  const r = await api.exec(id, { command: `curl -s -o /dev/null -m 3 -w '%{http_code}' ${url} || true` });
  return r.stdout.trim();
}

async function resolves(id: string, name: string): Promise<string> {
  const r = await api.exec(id, { command: `getent hosts ${name} | cut -d' ' -f1 || true` });
  return r.stdout.trim();
}

async function udpEcho(id: string, host: string, port: number): Promise<boolean> {
  const script = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'ping',('${host}',${port}))\ntry:\n  print(s.recvfrom(100)[0].decode())\nexcept Exception:\n  print('none')`;
  const r = await api.exec(id, { args: ["python3", "-c", script] });
  return r.stdout.trim() === "ping";
}

describe("egress policies, enforced on the host", () => {
  it("allow-all reaches the internet through NAT and resolves any name", async () => {
    const s = await api.createSandbox();
    expect(s.networkPolicy).toEqual({ mode: "allow-all" });
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("200");
    const seen = await api.exec(s.id, { command: `curl -s -m 3 http://${net.ip.web}/` });
    expect(JSON.parse(seen.stdout).from).toBe(net.ip.gateway);
    expect(await resolves(s.id, "web.test")).toBe(net.ip.web);
    expect(await udpEcho(s.id, net.ip.web, 9999)).toBe(true);
  });

  it("deny-all blocks TCP, UDP and DNS — also as internetAccess: false", async () => {
    for (const body of [{ networkPolicy: { mode: "deny-all" } }, { internetAccess: false }]) {
      const s = await api.createSandbox(body);
      expect(s.networkPolicy).toEqual({ mode: "deny-all" });
      expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("000");
      expect(await udpEcho(s.id, net.ip.web, 9999)).toBe(false);
      expect(await resolves(s.id, "web.test")).toBe("");
      // DNS straight to the real resolver is caught too.
      const direct = await api.exec(s.id, {
        args: [
          "python3",
          "-c",
          `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(bytes.fromhex('12340100000100000000000003776562047465737400000100 01'.replace(' ','')),('${net.ip.dns}',53))\ntry:\n  print(len(s.recvfrom(512)[0]))\nexcept Exception:\n  print('none')`,
        ],
      });
      expect(direct.stdout.trim()).toBe("none");
    }
  });

  it("custom: allowed CIDR on allowed ports, allowed domains; denied names get NXDOMAIN and stay blocked", async () => {
    const s = await api.createSandbox({
      networkPolicy: {
        mode: "custom",
        allow: { cidrs: [`${net.ip.web}/32`], domains: ["allowed.test", "*.wild.test"], ports: [80] },
        deny: { domains: ["denied.test"] },
      },
    });
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("200");
    expect(await httpCode(s.id, `http://${net.ip.web}:8080/`)).toBe("000");
    expect(await udpEcho(s.id, net.ip.web, 9999)).toBe(false);
    // Before the name is resolved, its address is closed; resolving it opens it.
    expect(await httpCode(s.id, `http://${net.ip.allowed}/`)).toBe("000");
    expect(await resolves(s.id, "allowed.test")).toBe(net.ip.allowed);
    expect(await httpCode(s.id, "http://allowed.test/")).toBe("200");
    expect(await resolves(s.id, "api.wild.test")).toBe(net.ip.wild);
    expect(await httpCode(s.id, "http://api.wild.test/")).toBe("200");
    expect(await resolves(s.id, "denied.test")).toBe("");
    expect(await httpCode(s.id, `http://${net.ip.denied}/`)).toBe("000");
    expect(await resolves(s.id, "web.test")).toBe("");
  });

  it("changes the policy of a running sandbox at once, without restarting it", async () => {
    const s = await api.createSandbox({ networkPolicy: { mode: "deny-all" } });
    await api.post(`/v1/sandboxes/${s.id}/exec`, { command: "sleep 600", background: true });
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("000");
    const opened = await api.call<SandboxBody>("PUT", `/v1/sandboxes/${s.id}/network-policy`, { mode: "allow-all" });
    expect(opened.status).toBe(200);
    expect(opened.body.networkPolicy).toEqual({ mode: "allow-all" });
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("200");
    const closed = await api.call("PUT", `/v1/sandboxes/${s.id}/network-policy`, {
      mode: "custom",
      allow: { cidrs: [`${net.ip.allowed}/32`] },
    });
    expect(closed.status).toBe(200);
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("000");
    expect(await httpCode(s.id, `http://${net.ip.allowed}/`)).toBe("200");
    const ps = await api.exec(s.id, { command: "ps -eo args | grep -c '^sleep 600'" });
    expect(ps.stdout.trim()).toBe("1");
    const bad = await api.call<ErrorBody>("PUT", `/v1/sandboxes/${s.id}/network-policy`, {
      mode: "custom",
      allow: { cidrs: ["not-a-cidr"] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details!.fields![0]!.field).toBe("allow.cidrs.0");
  });

  it("keeps a custom policy through a pause and resume: what it denies stays denied, what it allows works", async () => {
    const s = await api.createSandbox({
      networkPolicy: { mode: "custom", allow: { cidrs: [`${net.ip.web}/32`], domains: ["allowed.test"], ports: [80] } },
    });
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("200");
    expect((await api.post(`/v1/sandboxes/${s.id}/pause`)).status).toBe(200);
    expect((await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/resume`)).body.status).toBe("running");
    // The resume applies the policy while runsc restores: by the time it answers, it holds.
    expect(await httpCode(s.id, `http://${net.ip.denied}/`)).toBe("000");
    expect(await httpCode(s.id, `http://${net.ip.web}:8080/`)).toBe("000");
    expect(await resolves(s.id, "web.test")).toBe("");
    expect(await httpCode(s.id, `http://${net.ip.web}/`)).toBe("200");
    expect(await resolves(s.id, "allowed.test")).toBe(net.ip.allowed);
    expect(await httpCode(s.id, "http://allowed.test/")).toBe("200");
  });

  it("never lets a sandbox reach the host, the API, another sandbox or the metadata address", async () => {
    const [a, b] = await Promise.all([api.createSandbox(), api.createSandbox()]);
    await api.post(`/v1/sandboxes/${b.id}/exec`, {
      command: "python3 -m http.server 8000 --bind 0.0.0.0",
      background: true,
    });
    const gw = await api.exec(a.id, { command: "ip route | awk '/default/ {print $3}'" });
    const gateway = gw.stdout.trim();
    const bIp = (
      await api.exec(b.id, { command: 'ip -4 -o addr show | awk \'$2 != "lo" {sub(/\\/.*/, "", $4); print $4}\'' })
    ).stdout.trim();
    expect(gateway).toMatch(/^10\./);
    // b's own server answers inside b (so that the refusals below are the firewall's doing).
    await waitFor(async () => ((await httpCode(b.id, "http://127.0.0.1:8000/")) === "200" ? true : undefined));
    const apiPort = new URL(server.url).port;
    expect(await httpCode(a.id, `http://${gateway}:${apiPort}/v1/health`)).toBe("000");
    expect(await httpCode(a.id, `http://${gateway}:22/`)).toBe("000");
    expect(await httpCode(a.id, `http://${bIp}:8000/`)).toBe("000");
    expect(await httpCode(a.id, `http://${bIp}:49982/health`)).toBe("000");
    expect(await httpCode(a.id, `http://${net.ip.metadata}/`)).toBe("000");
    expect(await httpCode(a.id, `http://${net.ip.web}/`)).toBe("200");
  });

  it("rejects invalid policies naming the field", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", {
      networkPolicy: { mode: "custom", allow: { domains: ["bad domain!"], ports: [70000] } },
    });
    expect(res.status).toBe(400);
    const fields = res.body.error.details!.fields!.map((f) => f.field);
    expect(fields).toEqual(expect.arrayContaining(["networkPolicy.allow.domains.0", "networkPolicy.allow.ports.0"]));
    const conflict = await api.post<ErrorBody>("/v1/sandboxes", {
      internetAccess: false,
      networkPolicy: { mode: "allow-all" },
    });
    expect(conflict.status).toBe(400);
    expect(conflict.body.error.details!.fields![0]!.field).toBe("internetAccess");
  });
});
