// Who may reach a sandbox's E2B code interpreter (port 49999 under E2B_SANDBOX_URL): running code takes
// the sandbox's envd access token; context calls, which the SDK sends without it, take the traffic token
// of a sandbox whose traffic is not public.
import { Sandbox } from "@e2b/code-interpreter";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

const saved = { ...process.env };
/** A sandbox whose traffic is not public: the SDK holds its traffic token. */
let closed: Sandbox;
let closedTokens: { envdAccessToken: string; trafficAccessToken: string };
/** Another sandbox of the same organisation, whose tokens must not open the first. */
let other: Sandbox;
let otherTokens: { envdAccessToken: string };

async function tokensOf(sandbox: Sandbox) {
  const res = await fetch(`${server.url}/e2b/sandboxes/${sandbox.sandboxId}`, {
    headers: { "X-API-KEY": String(process.env.E2B_API_KEY) },
  });
  return (await res.json()) as { envdAccessToken: string };
}

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "e2b-ci-security", format: "e2b" });
  process.env.E2B_API_KEY = key;
  process.env.E2B_API_URL = `${server.url}/e2b`;
  process.env.E2B_SANDBOX_URL = `${server.url}/e2b/envd`;
  [closed, other] = await Promise.all([
    Sandbox.create({ timeoutMs: 300_000, network: { allowPublicTraffic: false } }),
    Sandbox.create("base", { timeoutMs: 300_000 }),
  ]);
  closedTokens = {
    envdAccessToken: (await tokensOf(closed)).envdAccessToken,
    trafficAccessToken: String(closed.trafficAccessToken),
  };
  otherTokens = await tokensOf(other);
});

afterAll(async () => {
  await Promise.all([closed, other].map((s) => s?.kill().catch(() => undefined)));
  process.env = saved;
});

function codeInterpreter(sandboxId: string, path: string, method: string, headers: Record<string, string> = {}) {
  return fetch(`${server.url}/e2b/envd${path}`, {
    method,
    headers: {
      "E2b-Sandbox-Id": sandboxId,
      "E2b-Sandbox-Port": "49999",
      "content-type": "application/json",
      ...headers,
    },
    ...(method === "POST" ? { body: JSON.stringify(path === "/execute" ? { code: "1" } : {}) } : {}),
  });
}

describe("E2B code interpreter access", () => {
  it("the SDK reaches the contexts of a sandbox without public traffic with its traffic token", async () => {
    expect(closed.trafficAccessToken).toMatch(/\S/);
    const context = await closed.createCodeContext();
    expect((await closed.listCodeContexts()).map((c) => c.id)).toContain(context.id);
    expect((await closed.runCode("6 * 7")).text).toBe("42");
  });

  it("refuses context calls without a token, with a wrong one or with another sandbox's", async () => {
    const calls: [string, string][] = [
      ["/contexts", "GET"],
      ["/contexts", "POST"],
      ["/contexts/any/restart", "POST"],
      ["/contexts/any", "DELETE"],
    ];
    const attempts: Record<string, string>[] = [
      {},
      { "E2B-Traffic-Access-Token": "wrong" },
      { "X-Access-Token": "wrong" },
      { "X-Access-Token": otherTokens.envdAccessToken },
    ];
    for (const [path, method] of calls) {
      for (const headers of attempts) {
        const res = await codeInterpreter(closed.sandboxId, path, method, headers);
        expect(res.status, `${method} ${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(await res.json()).toEqual({ code: 401, message: expect.stringContaining("access token") });
        expect(res.headers.get("x-request-id")).toMatch(/\S/);
      }
    }
  });

  it("runs no code without the sandbox's envd access token, whatever else the request holds", async () => {
    for (const [sandboxId, headers] of [
      [closed.sandboxId, {}],
      [closed.sandboxId, { "E2B-Traffic-Access-Token": closedTokens.trafficAccessToken }],
      [closed.sandboxId, { "X-Access-Token": otherTokens.envdAccessToken }],
      // A sandbox with public traffic opens its contexts to anyone, but not its code.
      [other.sandboxId, {}],
      [other.sandboxId, { "X-Access-Token": closedTokens.envdAccessToken }],
    ] as const) {
      const res = await codeInterpreter(sandboxId, "/execute", "POST", headers);
      expect(res.status, `${sandboxId} ${JSON.stringify(headers)}`).toBe(401);
      expect(await res.json()).toEqual({ code: 401, message: expect.stringContaining("X-Access-Token") });
    }
  });
});
