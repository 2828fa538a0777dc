import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../testing/test-app.js";

// Every dialect answers a bad key and an unknown sandbox in its provider's shape (through `app.inject()`).
let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const ID = "sbx_aaaaaaaaaaaaaaaaaaaa";
const NOT_FOUND = `sandbox ${ID} not found`;

interface DialectCase {
  name: string;
  url: string;
  keyHeaders(key: string): Record<string, string>;
  unauthorized: { status: number; body: unknown };
  notFound: unknown;
}

const cases: DialectCase[] = [
  {
    name: "E2B",
    url: `/e2b/sandboxes/${ID}`,
    keyHeaders: (key) => ({ "x-api-key": key }),
    unauthorized: { status: 401, body: { code: 401, message: "Invalid API key" } },
    notFound: { code: 404, message: NOT_FOUND },
  },
  {
    name: "OpenSandbox",
    url: `/opensandbox/v1/sandboxes/${ID}`,
    keyHeaders: (key) => ({ "open-sandbox-api-key": key }),
    unauthorized: {
      status: 401,
      body: { code: "INVALID_API_KEY", message: "Authentication credentials are invalid. Check your API key." },
    },
    notFound: { code: "SANDBOX::SANDBOX_NOT_FOUND", message: NOT_FOUND },
  },
  {
    name: "Vercel",
    url: `/vercel/v1/sandboxes/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: {
      status: 403,
      body: { error: { code: "forbidden", message: "Not authorized", invalidToken: true } },
    },
    notFound: { error: { code: "not_found", message: NOT_FOUND } },
  },
  {
    name: "Leap0",
    url: `/leap0/v1/sandbox/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: { status: 401, body: { message: "Invalid API key" } },
    notFound: { message: NOT_FOUND },
  },
  {
    name: "ZWRM",
    url: `/zwrm/v1/sandboxes/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: { status: 401, body: { error: "Invalid API key", code: "unauthorized" } },
    notFound: { error: NOT_FOUND, code: "not_found" },
  },
  {
    name: "Nullspace",
    url: `/nullspace/v1/sandboxes/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: {
      status: 401,
      body: {
        error: { code: "unauthorized", message: "Invalid API key", status: 401, request_id: expect.any(String) },
      },
    },
    notFound: { error: { code: "not_found", message: NOT_FOUND, status: 404, request_id: expect.any(String) } },
  },
];

describe.each(cases)("$name dialect without root", (dialect) => {
  it("answers a wrong key in the provider's shape", async () => {
    const res = await t.app.inject({ method: "GET", url: dialect.url, headers: dialect.keyHeaders("sp_wrong") });
    expect(res.statusCode).toBe(dialect.unauthorized.status);
    expect(res.json()).toEqual(dialect.unauthorized.body);
  });

  it("answers an unknown sandbox with the provider's 404", async () => {
    const res = await t.app.inject({ method: "GET", url: dialect.url, headers: dialect.keyHeaders(t.apiKey) });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual(dialect.notFound);
  });
});
