import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "./testing/test-app.js";

// The native API through `app.inject()`: real services over a temporary SQLite store and a fake runtime.
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const UNKNOWN_SANDBOX = "sbx_aaaaaaaaaaaaaaaaaaaa";
const json = (key: string) => ({ authorization: `Bearer ${key}`, "content-type": "application/json" });

describe("native API without root", () => {
  it("answers 401 in the API's envelope without a key and with a wrong one", async () => {
    const missing = await t.app.inject({ method: "GET", url: `/v1/sandboxes/${UNKNOWN_SANDBOX}` });
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toEqual({
      error: { code: "unauthorized", message: "Missing API key: send Authorization: Bearer <key>" },
    });
    expect(missing.headers["x-request-id"]).toBeTruthy();
    const wrong = await t.app.inject({
      method: "GET",
      url: `/v1/sandboxes/${UNKNOWN_SANDBOX}`,
      headers: { authorization: "Bearer sp_wrong" },
    });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toEqual({ error: { code: "unauthorized", message: "Invalid API key" } });
  });

  it("names the field and the rule of a body that fails validation", async () => {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/sandboxes",
      headers: json(t.apiKey),
      payload: JSON.stringify({ timeoutMs: -1 }),
    });
    expect(res.statusCode).toBe(400);
    const { error } = res.json();
    expect(error.code).toBe("validation_failed");
    expect(error.details.fields).toEqual([expect.objectContaining({ field: "timeoutMs", rule: "too_small" })]);
    expect(t.runtime.started).toEqual([]);
  });

  it("asks for a JSON body where one is required, and refuses unknown fields by name", async () => {
    const empty = await t.app.inject({ method: "POST", url: "/v1/sandboxes", headers: json(t.apiKey) });
    expect(empty.statusCode).toBe(400);
    expect(empty.json().error.details.fields).toEqual([
      { field: "(body)", rule: "required", message: "a JSON body is required" },
    ]);
    const unknown = await t.app.inject({
      method: "POST",
      url: "/v1/sandboxes",
      headers: json(t.apiKey),
      payload: JSON.stringify({ vcpus: 2 }),
    });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error.details.fields).toEqual([expect.objectContaining({ rule: "unrecognized_keys" })]);
  });

  it("answers an unknown sandbox and an unknown route with 404s in the envelope", async () => {
    const sandbox = await t.app.inject({
      method: "GET",
      url: `/v1/sandboxes/${UNKNOWN_SANDBOX}`,
      headers: json(t.apiKey),
    });
    expect(sandbox.statusCode).toBe(404);
    expect(sandbox.json()).toEqual({
      error: { code: "sandbox_not_found", message: `sandbox ${UNKNOWN_SANDBOX} not found` },
    });
    const route = await t.app.inject({ method: "GET", url: "/v1/nothing-here" });
    expect(route.statusCode).toBe(404);
    expect(route.json()).toEqual({ error: { code: "not_found", message: "No route for GET /v1/nothing-here" } });
  });

  it("serves an OpenAPI 3 document that lists the routes, without a key", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/openapi.json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.info.title).toBe("Sandpit API");
    for (const path of ["/v1/sandboxes", "/v1/sandboxes/{id}", "/v1/sandboxes/{id}/exec", "/v1/sandboxes/{id}/ports"]) {
      expect(doc.paths, path).toHaveProperty([path]);
    }
    expect(doc.paths["/v1/sandboxes"].post.requestBody).toBeDefined();
    // Dialects describe themselves in their providers' documents, not in Sandpit's.
    const prefixes = ["/e2b", "/opensandbox", "/vercel", "/leap0", "/zwrm", "/nullspace", "/daytona"];
    expect(Object.keys(doc.paths).filter((p) => prefixes.some((prefix) => p.startsWith(prefix)))).toEqual([]);
  });
});

describe("internal API between nodes", () => {
  it("answers only requests signed by a node of the cluster: no key, a client's key or forged node headers get 401", async () => {
    const url = "/internal/v1/node";
    const anonymous = await t.app.inject({ method: "GET", url });
    expect(anonymous.statusCode).toBe(401);
    const client = await t.app.inject({ method: "GET", url, headers: { authorization: `Bearer ${t.apiKey}` } });
    expect(client.statusCode).toBe(401);
    const forged = await t.app.inject({
      method: "GET",
      url,
      headers: {
        "x-sandpit-node-from": "node-x",
        "x-sandpit-node-at": String(Date.now()),
        "x-sandpit-node-signature": "00",
      },
    });
    expect(forged.statusCode).toBe(401);
    expect(forged.json().error.code).toBe("unauthorized");
    const signed = await t.app.inject({ method: "GET", url, headers: t.services.nodeClient.sign("GET", url) });
    expect(signed.statusCode).toBe(200);
  });
});
