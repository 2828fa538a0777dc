import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../testing/test-app.js";
import { parseSandboxHost } from "./traffic-router.js";

const ID = "sbx_aaaaaaaaaaaaaaaaaaaa";
const DOMAIN = "sbx.test";

describe("parseSandboxHost", () => {
  it("reads {port}-{id}.{domain}, with or without a port, in any case", () => {
    expect(parseSandboxHost(`8080-${ID}.${DOMAIN}`, DOMAIN)).toEqual({ sandboxId: ID, port: 8080 });
    expect(parseSandboxHost(`49983-${ID.toUpperCase()}.SBX.test:443`, DOMAIN)).toEqual({ sandboxId: ID, port: 49983 });
  });

  it("refuses other names, deeper names and a server without a domain", () => {
    expect(parseSandboxHost(`8080-${ID}.other.test`, DOMAIN)).toBeUndefined();
    expect(parseSandboxHost(`x.8080-${ID}.${DOMAIN}`, DOMAIN)).toBeUndefined();
    expect(parseSandboxHost(`8080-${ID}.deeper.${DOMAIN}`, DOMAIN)).toBeUndefined();
    expect(parseSandboxHost(`8080-${ID}.${DOMAIN}`, undefined)).toBeUndefined();
    expect(parseSandboxHost(undefined, DOMAIN)).toBeUndefined();
  });
});

describe("one traffic router before routing", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ domain: DOMAIN });
  });
  afterAll(() => t.close());

  it("sends envd's host name to the E2B dialect and its path prefix too", async () => {
    const byHost = await t.app.inject({ method: "GET", url: "/health", headers: { host: `49983-${ID}.${DOMAIN}` } });
    expect(byHost.statusCode).toBe(204);
    const byPath = await t.app.inject({ method: "GET", url: "/e2b/envd/health" });
    expect(byPath.statusCode).toBe(204);
  });

  it("sends every other port's host name to the port proxy, whatever the path", async () => {
    const notExposed = { code: "not_found", message: `port 8080 of sandbox ${ID} is not exposed` };
    const plain = await t.app.inject({ method: "GET", url: "/anything", headers: { host: `8080-${ID}.${DOMAIN}` } });
    expect(plain.statusCode).toBe(404);
    expect(plain.json()).toEqual({ error: notExposed });
    // A sandbox's port owns its host name: envd's path prefix there is the sandbox's, not envd's.
    const envdPath = await t.app.inject({
      method: "GET",
      url: "/e2b/envd/health",
      headers: { host: `8080-${ID}.${DOMAIN}` },
    });
    expect(envdPath.statusCode).toBe(404);
    const native = await t.app.inject({ method: "GET", url: `/v1/sandboxes/${ID}/ports/8080/anything` });
    expect(native.statusCode).toBe(404);
    expect(native.json()).toEqual({ error: notExposed });
  });

  it("routes E2B_SANDBOX_URL requests by their E2b-Sandbox-Port header: envd, the code interpreter, the port proxy", async () => {
    const under = (port: string, url: string) =>
      t.app.inject({ method: "GET", url, headers: { "e2b-sandbox-id": ID, "e2b-sandbox-port": port } });
    expect((await under("49983", "/e2b/envd/health")).statusCode).toBe(204);
    const codeInterpreter = await under("49999", "/e2b/envd/health");
    expect(codeInterpreter.statusCode).toBe(200);
    expect(codeInterpreter.json()).toBe("OK");
    // The port proxy gets the rest; under E2B's URL its errors are in E2B's shape.
    const proxied = await under("8080", "/e2b/envd/anything?x=1");
    expect(proxied.statusCode).toBe(404);
    expect(proxied.json()).toEqual({ code: 404, message: `port 8080 of sandbox ${ID} is not exposed` });
    const byHost = await t.app.inject({ method: "GET", url: "/health", headers: { host: `49999-${ID}.${DOMAIN}` } });
    expect(byHost.json()).toBe("OK");
    // Outside the prefix the headers mean nothing.
    expect((await under("49999", "/v1/openapi.json")).statusCode).toBe(200);
  });

  it("answers a bad E2b-Sandbox-Port, and a port without a sandbox, with envd's error and X-Request-ID", async () => {
    for (const [headers, message] of [
      [{ "e2b-sandbox-id": ID, "e2b-sandbox-port": "99999" }, "E2b-Sandbox-Port must be a port number (1-65535)"],
      [{ "e2b-sandbox-port": "49999" }, "missing E2b-Sandbox-Id (for port 49999)"],
    ] as const) {
      const res = await t.app.inject({ method: "POST", url: "/e2b/envd/execute", headers });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toEqual({ code: 400, message });
      expect(res.headers["x-request-id"]).toMatch(/\S/);
    }
  });

  it("answers an unknown envd path with envd's error body and X-Request-ID", async () => {
    for (const headers of [
      {},
      { "e2b-sandbox-id": ID, "e2b-sandbox-port": "49983" },
      { host: `49983-${ID}.${DOMAIN}` },
    ]) {
      const res = await t.app.inject({ method: "POST", url: "/e2b/envd/no/such/path", headers });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toEqual({ code: 404, message: expect.stringContaining("/no/such/path") });
      expect(res.headers["x-request-id"]).toMatch(/\S/);
    }
    const codeInterpreter = await t.app.inject({
      method: "GET",
      url: "/e2b/envd/no-such-path",
      headers: { "e2b-sandbox-id": ID, "e2b-sandbox-port": "49999" },
    });
    expect(codeInterpreter.statusCode).toBe(404);
    expect(codeInterpreter.json()).toEqual({ code: 404, message: "the code interpreter has no GET /no-such-path" });
    expect(codeInterpreter.headers["x-request-id"]).toMatch(/\S/);
  });

  it("leaves the server's own host name to the routes", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/openapi.json", headers: { host: `api.${DOMAIN}` } });
    expect(res.statusCode).toBe(200);
  });
});
