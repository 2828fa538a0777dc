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

  it("leaves the server's own host name to the routes", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/openapi.json", headers: { host: `api.${DOMAIN}` } });
    expect(res.statusCode).toBe(200);
  });
});
