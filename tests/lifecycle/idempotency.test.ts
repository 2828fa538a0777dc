import { describe, expect, it } from "vitest";
import type { apiClient, ErrorBody, SandboxBody } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  server = s;
  api = a;
});

describe("Idempotency-Key", () => {
  it("creates one sandbox for concurrent retries, replays after a restart, and refuses a different body", async () => {
    const body = { metadata: { idem: "one" } };
    const headers = { "idempotency-key": "create-one-7f3a" };
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => api.call<SandboxBody>("POST", "/v1/sandboxes", body, headers)),
    );
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    const ids = new Set(responses.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    expect(responses.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(4);
    const listed = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.idem=one");
    expect(listed.body.sandboxes).toHaveLength(1);

    await server.kill9();
    await server.restart();
    const again = await api.call<SandboxBody>("POST", "/v1/sandboxes", body, headers);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(responses[0]!.body.id);
    expect(
      (await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.idem=one")).body.sandboxes,
    ).toHaveLength(1);

    const mismatch = await api.call<ErrorBody>("POST", "/v1/sandboxes", { metadata: { idem: "two" } }, headers);
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.error.code).toBe("idempotency_mismatch");
  });

  it("does not store requests that failed validation, and rejects malformed keys", async () => {
    // As with the common APIs: a request that never started executing leaves the key free.
    const headers = { "idempotency-key": "fix-and-retry-1" };
    const first = await api.call<ErrorBody>("POST", "/v1/sandboxes", { resources: { vcpus: 99 } }, headers);
    expect(first.status).toBe(400);
    const fixed = await api.call<SandboxBody>("POST", "/v1/sandboxes", { resources: { vcpus: 1 } }, headers);
    expect(fixed.status).toBe(201);
    expect(fixed.headers.get("idempotent-replayed")).toBeNull();
    const bad = await api.call<ErrorBody>("POST", "/v1/sandboxes", {}, { "idempotency-key": "x".repeat(300) });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details!.fields![0]!.field).toBe("Idempotency-Key");
  });
});
