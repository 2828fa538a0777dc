import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config.js";
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
  /** A create that would work on a node with room. */
  create: { url: string; body: unknown; headers?: Record<string, string> };
  /** The status and body a create gets when no node has room. */
  noCapacity: { status: number; body: unknown };
}

const NO_ROOM = expect.stringMatching(/^no node of the cluster has room for this sandbox/);

/** Daytona's error body (NestJS's, with the code and source the SDK picks its error classes by). */
function daytonaError(status: number, error: string, message: unknown, code: string, path: string, method = "GET") {
  return {
    statusCode: status,
    error,
    message,
    code,
    source: "DAYTONA_API",
    timestamp: expect.any(String),
    path,
    method,
  };
}

const cases: DialectCase[] = [
  {
    name: "E2B",
    url: `/e2b/sandboxes/${ID}`,
    keyHeaders: (key) => ({ "x-api-key": key }),
    unauthorized: { status: 401, body: { code: 401, message: "Invalid API key" } },
    notFound: { code: 404, message: NOT_FOUND },
    create: { url: "/e2b/sandboxes", body: { templateID: "base" } },
    noCapacity: { status: 503, body: { code: 503, message: NO_ROOM } },
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
    create: {
      url: "/opensandbox/v1/sandboxes",
      body: { image: { uri: "base" }, timeout: 600, resourceLimits: { cpu: "1", memory: "1Gi" }, entrypoint: ["sh"] },
    },
    noCapacity: { status: 503, body: { code: "SANDBOX::UNAVAILABLE", message: NO_ROOM } },
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
    create: { url: "/vercel/v2/sandboxes", body: {} },
    noCapacity: { status: 503, body: { error: { code: "service_unavailable", message: NO_ROOM } } },
  },
  {
    name: "Leap0",
    url: `/leap0/v1/sandbox/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: { status: 401, body: { message: "Invalid API key" } },
    notFound: { message: NOT_FOUND },
    create: { url: "/leap0/v1/sandbox", body: { template_name: "base", vcpu: 1, memory_mib: 1024 } },
    noCapacity: { status: 503, body: { message: NO_ROOM } },
  },
  {
    name: "ZWRM",
    url: `/zwrm/v1/sandboxes/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: { status: 401, body: { error: "Invalid API key", code: "unauthorized" } },
    notFound: { error: NOT_FOUND, code: "not_found" },
    create: { url: "/zwrm/v1/sandboxes", body: { template: "base" } },
    noCapacity: { status: 503, body: { error: NO_ROOM, code: "unavailable" } },
  },
  {
    name: "Daytona",
    url: `/daytona/api/sandbox/${ID}`,
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    unauthorized: {
      status: 401,
      body: daytonaError(
        401,
        "Unauthorized",
        "Unauthorized: Invalid API key",
        "UNAUTHORIZED",
        `/daytona/api/sandbox/${ID}`,
      ),
    },
    notFound: daytonaError(
      404,
      "Not Found",
      `Sandbox with ID or name ${ID} not found`,
      "SANDBOX_NOT_FOUND",
      `/daytona/api/sandbox/${ID}`,
    ),
    create: { url: "/daytona/api/sandbox", body: {} },
    noCapacity: {
      status: 503,
      body: daytonaError(503, "Service Unavailable", NO_ROOM, "NO_CAPACITY", "/daytona/api/sandbox", "POST"),
    },
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
    create: { url: "/nullspace/v1/sandboxes", body: {}, headers: { "idempotency-key": "no-room-1" } },
    noCapacity: {
      status: 503,
      body: { error: { code: "unavailable", message: NO_ROOM, status: 503, request_id: expect.any(String) } },
    },
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

describe("a create no node has room for", () => {
  let full: TestApp;
  beforeAll(async () => {
    // One node with less memory than the smallest sandbox asks (memory is not overcommitted by default):
    // every create is refused before anything starts.
    const base = loadConfig();
    full = await createTestApp({
      cluster: { ...base.cluster, capacity: { vcpus: 1, memoryMb: 128, diskMb: 8192, sandboxes: 4 } },
    });
    await full.services.membership.register("http://127.0.0.1:9");
  });
  afterAll(() => full.close());

  it("answers 503 no_capacity with Retry-After and the nodes it tried in the native envelope", async () => {
    const res = await full.app.inject({
      method: "POST",
      url: "/v1/sandboxes",
      headers: { authorization: `Bearer ${full.apiKey}`, "content-type": "application/json" },
      payload: {},
    });
    expect(res.statusCode).toBe(503);
    expect(res.headers["retry-after"]).toBe("5");
    expect(res.json()).toEqual({
      error: {
        code: "no_capacity",
        message: NO_ROOM,
        details: {
          requested: { vcpus: 1, memoryMb: 1024, diskMb: 4096 },
          nodes: [{ node: full.services.membership.nodeId, reason: "memoryMb 0 of 128 allocated, 1024 requested" }],
        },
      },
    });
  });

  it.each(cases)("answers $name's create in its shape, with Retry-After", async (dialect) => {
    const res = await full.app.inject({
      method: "POST",
      url: dialect.create.url,
      headers: { ...dialect.keyHeaders(full.apiKey), "content-type": "application/json", ...dialect.create.headers },
      payload: JSON.stringify(dialect.create.body),
    });
    expect(res.statusCode).toBe(dialect.noCapacity.status);
    expect(res.headers["retry-after"]).toBe("5");
    expect(res.json()).toEqual(dialect.noCapacity.body);
  });
});
