// Attacks on the server's own outbound requests (issue 14): a tarball or git source, an image pull, a
// registry's token realm or redirect, and a webhook must never make Sandpit connect to its host's
// loopback, another sandbox or anything else non-public — whatever spelling of the address is used.
// The victim is a real server on loopback that counts every connection; it must count none.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutboundBlockedError, OutboundGuard } from "../../packages/server/src/outbound/outbound-guard.js";
import { SourceFetcher } from "../../packages/server/src/sources/source-fetcher.js";
import { apiClient, type ErrorBody } from "../helpers/api.js";
import { makeGitRepo, startLoopbackHttp } from "../helpers/loopback-http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** A server on 127.0.0.1 and ::1 (same port) that counts the connections it is offered. */
interface Victim {
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function listen(handler: Parameters<typeof createServer>[1], host: string, port = 0): Promise<Server> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return server;
}

async function startVictim(): Promise<Victim> {
  const victim = { port: 0, connections: 0 } as Victim;
  const count = (socket: Socket) => {
    victim.connections++;
    socket.destroy();
  };
  const v4 = await listen(() => {}, "127.0.0.1");
  victim.port = (v4.address() as AddressInfo).port;
  const servers = [v4, await listen(() => {}, "::1", victim.port)];
  for (const s of servers) s.on("connection", count);
  victim.close = async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
  };
  return victim;
}

/** Every way of writing the host's loopback that WHATWG URL accepts (the port is the victim's). */
const loopbackForms = (port: number) => [
  `[::ffff:127.0.0.1]:${port}`,
  `[::ffff:7f00:1]:${port}`,
  `[0:0:0:0:0:ffff:7f00:1]:${port}`,
  `[::ffff:0:7f00:1]:${port}`,
  `[::127.0.0.1]:${port}`,
  `[::7f00:1]:${port}`,
  `[64:ff9b::7f00:1]:${port}`,
  `[2002:7f00:1::]:${port}`,
  `[::1]:${port}`,
  `[0::1]:${port}`,
  `[::]:${port}`,
  `127.0.0.1:${port}`,
  `127.1:${port}`,
  `0x7f.1:${port}`,
  `0177.0.0.1:${port}`,
  `2130706433:${port}`,
  `0:${port}`,
  `0.0.0.0:${port}`,
  `localhost:${port}`,
  `localhost.:${port}`,
  `LOCALHOST:${port}`,
];

let victim: Victim;
let forms: string[];
/** A host the admin allows, which points wherever the attacker wants: redirects, registry realms. */
let allowed: Server;
let allowedHost: string;
let server: TestServer;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  victim = await startVictim();
  forms = loopbackForms(victim.port);
  allowed = await listen((req, res) => {
    // /to/<i>/…: a redirect to the i-th form; /v2/f<i>/realm|redirect/…: a registry pointing there.
    const path = (req.url ?? "").split("/");
    if (path[1] === "to") {
      res.writeHead(302, { location: `http://${forms[Number(path[2])]}/x.tar.gz` }).end();
      return;
    }
    const target = `http://${forms[Number(path[2]?.slice(1))]}`;
    if (path[3] === "realm") {
      res.writeHead(401, { "www-authenticate": `Bearer realm="${target}/token",service="x"` }).end();
    } else {
      res.writeHead(307, { location: `${target}/v2/x/manifests/latest` }).end();
    }
  }, "127.0.0.1");
  allowedHost = `127.0.0.1:${(allowed.address() as AddressInfo).port}`;
  server = await startTestServer({ SANDPIT_OUTBOUND_ALLOWED_HOSTS: allowedHost });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  if (allowed) {
    allowed.closeAllConnections();
    await new Promise((resolve) => allowed.close(resolve));
  }
  await victim?.close();
});

/** A create that must fail without a sandbox left behind; returns the error. */
async function createRefused(body: Record<string, unknown>): Promise<{ status: number; body: ErrorBody }> {
  const before = (await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes?includeDestroyed=true")).body.sandboxes.length;
  const res = await api.post<ErrorBody>("/v1/sandboxes", body);
  const after = (await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes?includeDestroyed=true")).body.sandboxes.length;
  expect(after, JSON.stringify(body)).toBe(before);
  return res;
}

describe("server-side fetches never reach the host's loopback", () => {
  it("refuses tarball and git sources at every spelling of loopback", async () => {
    for (const host of forms) {
      for (const source of [
        { type: "tarball", url: `http://${host}/x.tar.gz` },
        { type: "git", url: `http://${host}/x.git` },
      ]) {
        const res = await createRefused({ source });
        expect(res.status, source.url).toBe(422);
        expect(res.body.error.code, source.url).toBe("source_failed");
        expect(res.body.error.message, source.url).toMatch(/non-public address/);
      }
    }
    expect(victim.connections).toBe(0);
  });

  it("refuses a redirect from an allowed host to loopback", async () => {
    for (const i of forms.keys()) {
      const url = `http://${allowedHost}/to/${i}/x.tar.gz`;
      const res = await createRefused({ source: { type: "tarball", url } });
      expect(res.status, forms[i]).toBe(422);
      expect(res.body.error.message, forms[i]).toMatch(/non-public address/);
      // git follows no redirect at all.
      const git = await createRefused({ source: { type: "git", url: `http://${allowedHost}/to/${i}/x.git` } });
      expect(git.status, forms[i]).toBe(422);
    }
    expect(victim.connections).toBe(0);
  });

  it("refuses to pull an image from a registry on loopback, or to follow its realm or redirect there", async () => {
    for (const [i, host] of forms.entries()) {
      const uris = [
        `${host}/app:latest`,
        `${allowedHost}/f${i}/realm/app:latest`,
        `${allowedHost}/f${i}/redirect/app:latest`,
      ];
      for (const uri of uris) {
        const res = await createRefused({ image: { uri }, entrypoint: [] });
        // A reference the image parser refuses (some spellings are no host[:port]) is a 400 as well.
        expect(res.status, uri).toBe(400);
        if (res.body.error.code === "validation_failed" && !/not a host/.test(res.body.error.message)) {
          expect(res.body.error.details?.fields?.[0]).toMatchObject({
            field: "image.uri",
            rule: "reachable_public_host",
          });
          expect(res.body.error.message, uri).toMatch(/non-public address/);
        }
      }
    }
    expect(victim.connections).toBe(0);
  });

  it("refuses a webhook whose receiver is on loopback", async () => {
    for (const host of forms) {
      const url = `http://${host}/hook`;
      const res = await api.post<ErrorBody>("/v1/webhooks", { url });
      expect(res.status, url).toBe(400);
      expect(res.body.error.details?.fields?.[0], url).toMatchObject({ field: "url", rule: "reachable_public_host" });
    }
    expect(victim.connections).toBe(0);
  });
});

describe("server-side fetches never reach another sandbox", () => {
  it("refuses a source at another sandbox's address, with the same answer for an open and a closed port", async () => {
    const other = await api.createSandbox();
    const sh = async (command: string) => (await api.exec(other.id, { command })).stdout.trim();
    const ip = await sh(
      `python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('192.0.2.1', 9)); print(s.getsockname()[0])"`,
    );
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    await sh("cd /tmp && (nohup python3 -m http.server 3000 >/tmp/http.log 2>&1 &) ; sleep 0");
    // The port is open from the host: a guard that let the request through would be seen in the log.
    const direct = await waitForOk(`http://${ip}:3000/`);
    expect(direct).toBe(200);
    const before = await sh("wc -l < /tmp/http.log");
    const hex = ip.split(".").map(Number);
    const mappedHex = `${((hex[0]! << 8) | hex[1]!).toString(16)}:${((hex[2]! << 8) | hex[3]!).toString(16)}`;
    const messages = new Set<string>();
    for (const host of [`[::ffff:${ip}]`, `[::ffff:${mappedHex}]`, `[64:ff9b::${ip}]`, ip]) {
      // 3000 is open, 49982 is the agent's port, 1 is closed: the answer must not tell them apart.
      for (const port of [3000, 49982, 1]) {
        const url = `http://${host}:${port}/x.tar.gz`;
        const res = await createRefused({ source: { type: "tarball", url } });
        expect(res.status, url).toBe(422);
        messages.add(res.body.error.message.replace(url, "URL").replace(new URL(url).host, "HOST"));
      }
    }
    expect([...messages]).toHaveLength(1);
    expect([...messages][0]).toMatch(/non-public address/);
    expect(await sh("wc -l < /tmp/http.log")).toBe(before);
    await api.del(`/v1/sandboxes/${other.id}`);
  });
});

describe("the guard's connections", () => {
  it("go to the address that was checked, without a second lookup a rebinding DNS could answer", async () => {
    const seen: string[] = [];
    const good = await listen((req, res) => {
      seen.push(String(req.headers.host));
      // A redirect to a name that now resolves to the victim: checked again, and refused.
      res.writeHead(302, { location: `http://rebound.test:${victim.port}/` }).end();
    }, "127.0.0.1");
    const port = (good.address() as AddressInfo).port;
    const lookups: string[] = [];
    const guard = new OutboundGuard({
      // The admin allows this name (it resolves to loopback); the redirect target is not allowed.
      allowedHosts: [`pinned.test:${port}`],
      sandboxSubnet: "10.231.0.0",
      // The first answer is the good server; any later one would be the victim.
      resolve: async (name) => {
        lookups.push(name);
        return [{ address: lookups.length === 1 ? "127.0.0.1" : "::ffff:127.0.0.1" }];
      },
    });
    // The system resolver knows no `pinned.test`: reaching the server at all proves no second lookup.
    const { response } = await guard.request(new URL(`http://pinned.test:${port}/x`), { idleTimeoutMs: 10_000 });
    response.resume();
    expect(response.statusCode).toBe(302);
    expect(seen).toEqual([`pinned.test:${port}`]);
    await expect(
      guard.request(new URL(`http://pinned.test:${port}/x`), { idleTimeoutMs: 10_000, maxRedirects: 5 }),
    ).rejects.toBeInstanceOf(OutboundBlockedError);
    expect(lookups).toEqual(["pinned.test", "pinned.test", "rebound.test"]);
    expect(victim.connections).toBe(0);
    good.closeAllConnections();
    await new Promise((resolve) => good.close(resolve));
  });
});

describe("git sources", () => {
  it("connect to the checked address of a name, not to what the system resolver says", async () => {
    const origin = await startLoopbackHttp();
    const work = mkdtempSync("/var/tmp/sandpit-outbound-git-");
    try {
      makeGitRepo(origin, "app", [{ "README.md": "pinned\n" }]);
      const port = new URL(origin.url).port;
      const lookups: string[] = [];
      const guard = new OutboundGuard({
        allowedHosts: [`pinned.test:${port}`],
        sandboxSubnet: "10.231.0.0",
        resolve: async (name) => {
          lookups.push(name);
          return [{ address: "127.0.0.1" }];
        },
      });
      // The system resolver knows no `pinned.test`: the clone works only if git connects to the pin.
      const fetched = await new SourceFetcher(guard, work).fetch(
        { type: "git", url: `http://pinned.test:${port}/git/app.git` },
        1024 * 1024,
      );
      expect(readFileSync(path.join(fetched.dir, "README.md"), "utf8")).toBe("pinned\n");
      expect(lookups).toEqual(["pinned.test"]);
      await fetched.remove();
      expect(existsSync(fetched.dir)).toBe(false);
    } finally {
      rmSync(work, { recursive: true, force: true });
      await origin.close();
    }
  });
});

/** GETs the URL from the test (the host) until it answers, bounded. */
async function waitForOk(url: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (res) {
      await res.arrayBuffer();
      return res.status;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never answered`);
}
