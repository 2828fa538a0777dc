// The @vercel/sandbox README's own example ends with `open(sandbox.domain(3000))`: with SANDPIT_DOMAIN set,
// that URL must reach the sandbox's port through Sandpit's port host. Plus the `sandbox` CLI's
// `__interactive` create flag, refused in Vercel's error shape.

import http from "node:http";
import { Sandbox } from "@vercel/sandbox";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const DOMAIN = "sandpit.test";
const VERCEL_API = "https://vercel.com/api";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_DOMAIN: DOMAIN });
});

afterAll(async () => {
  await server?.close();
});

const credentials = () => ({
  token: server.apiKey,
  teamId: "team_sandpit",
  projectId: "prj_vercel_domain",
  fetch: ((input, init) => fetch(String(input).replace(VERCEL_API, `${server.url}/vercel`), init)) as typeof fetch,
});

/** GET of a URL whose host name is a Sandpit port host, sent to the test server (no DNS for the name). */
function getByHost(url: URL): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: new URL(server.url).port,
        path: `${url.pathname}${url.search}`,
        headers: { host: url.host },
      },
      (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("@vercel/sandbox with SANDPIT_DOMAIN", () => {
  it("sandbox.domain(port) is Sandpit's port host for that port, and it serves the sandbox's port", async () => {
    const sandbox = await Sandbox.create({ ...credentials(), runtime: "node24", ports: [3000], timeout: 120_000 });
    try {
      const sessionId = sandbox.currentSession().sessionId;
      const domain = new URL(sandbox.domain(3000));
      expect(domain.host).toBe(`3000-${sessionId}.${DOMAIN}:${new URL(server.url).port}`);
      expect(domain.pathname).toBe("/");
      expect(sandbox.routes[0]?.url).toBe(`http://3000-${sessionId}.${DOMAIN}:${new URL(server.url).port}`);
      await sandbox.runCommand({
        cmd: "node",
        args: ["-e", "require('http').createServer((q, s) => s.end('hello from 3000')).listen(3000)"],
        detached: true,
      });
      const answer = await waitFor(
        async () => {
          const res = await getByHost(domain);
          return res.status === 200 ? res : undefined;
        },
        20_000,
        "the port answering through its host",
      );
      expect(answer.body).toBe("hello from 3000");
    } finally {
      await sandbox.stop().catch(() => undefined);
    }
  });

  it("refuses the sandbox CLI's __interactive create in Vercel's error shape, naming the field", async () => {
    const res = await fetch(`${server.url}/vercel/v2/sandboxes?teamId=team_sandpit`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ projectId: "prj_vercel_domain", runtime: "node24", __interactive: true }),
    });
    expect(res.status).toBe(501);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("not_supported");
    expect(body.error.message).toMatch(/__interactive/);
  });
});
