import { sandboxStatuses } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { sandboxRecord } from "../sandbox-record.fixture.js";
import {
  createRequestFrom,
  errorReplyOf,
  leap0Field,
  leap0MaxSandboxes,
  leap0ValidationError,
  networkPolicyFrom,
  pageOf,
  sandboxOf,
  stateOf,
} from "./mapping.js";
import { createSandboxSchema, listQuerySchema } from "./schemas.js";

const record = sandboxRecord({
  vcpus: 2,
  timeoutMs: 600_000,
  timeoutAction: "pause",
  expiresAt: null,
  networkPolicy: {
    mode: "custom",
    allow: { domains: ["api.openai.com"], cidrs: ["1.1.1.1"], ports: [] },
    deny: { domains: [], cidrs: [] },
    transforms: [{ domain: "api.openai.com", injectHeaders: { Authorization: "Bearer sk-1" }, stripHeaders: ["x-a"] }],
  },
});

const valid = { template_name: "base", vcpu: 2, memory_mib: 1024 };
const fieldsOf = (body: unknown) => {
  const result = createSandboxSchema.safeParse(body);
  return result.success
    ? []
    : ((leap0ValidationError(result.error).details?.fields ?? []) as { field: string }[]).map((f) => f.field);
};

describe("Leap0 mapping", () => {
  it("enforces the documented required fields and bounds", () => {
    expect(createSandboxSchema.parse(valid)).toMatchObject({ timeout_min: 5, auto_pause: false });
    expect(fieldsOf({})).toEqual(["template_name", "vcpu", "memory_mib"]);
    expect(fieldsOf({ ...valid, vcpu: 0 })).toEqual(["vcpu"]);
    expect(fieldsOf({ ...valid, vcpu: 9 })).toEqual(["vcpu"]);
    expect(fieldsOf({ ...valid, vcpu: 1.5 })).toEqual(["vcpu"]);
    expect(fieldsOf({ ...valid, memory_mib: 510 })).toEqual(["memory_mib"]);
    expect(fieldsOf({ ...valid, memory_mib: 8194 })).toEqual(["memory_mib"]);
    expect(fieldsOf({ ...valid, memory_mib: 1025 })).toEqual(["memory_mib"]);
    expect(fieldsOf({ ...valid, timeout_min: 0 })).toEqual(["timeout_min"]);
    expect(fieldsOf({ ...valid, timeout_min: 481 })).toEqual(["timeout_min"]);
    expect(fieldsOf({ ...valid, timeout_min: 480, memory_mib: 8192, vcpu: 8 })).toEqual([]);
    expect(fieldsOf({ ...valid, mounts: [], region: "x" })).toEqual(["mounts", "region"]);
    expect(fieldsOf({ ...valid, network_policy: { mode: "some" } })).toEqual(["network_policy.mode"]);
    expect(fieldsOf({ ...valid, network_policy: { mode: "deny-all", allow_cidrs: ["1.1.1.1"] } })).toEqual([
      "network_policy.allow_cidrs",
    ]);
    const many = (n: number, f: (i: number) => unknown) => Array.from({ length: n }, (_, i) => f(i));
    expect(
      fieldsOf({
        ...valid,
        network_policy: {
          mode: "custom",
          allow_domains: many(51, (i) => `d${i}.example.com`),
          allow_cidrs: many(11, (i) => `10.0.0.${i}`),
          transforms: many(21, () => ({ domain: "x.example.com" })),
        },
      }),
    ).toEqual(["network_policy.allow_domains", "network_policy.allow_cidrs", "network_policy.transforms"]);
    expect(fieldsOf({ ...valid, network_policy: { mode: "allow-all", transforms: [{}] } })).toEqual([
      "network_policy.transforms.0.domain",
    ]);
  });

  it("maps a create request onto Sandpit's", () => {
    const native = createRequestFrom(
      createSandboxSchema.parse({
        ...valid,
        memory_mib: 1000,
        timeout_min: 10,
        auto_pause: true,
        env_vars: { A: "1" },
        network_policy: {
          mode: "custom",
          allow_domains: ["API.openai.com"],
          allow_cidrs: ["1.1.1.1/32"],
          transforms: [{ domain: "api.openai.com", inject_headers: { Authorization: "Bearer k" } }],
        },
      }),
    );
    expect(native).toEqual({
      template: "base",
      resources: { vcpus: 2, memoryMb: 1024 },
      timeoutMs: 600_000,
      timeoutAction: "pause",
      env: { A: "1" },
      networkPolicy: {
        mode: "custom",
        transforms: [{ domain: "api.openai.com", injectHeaders: { Authorization: "Bearer k" }, stripHeaders: [] }],
        allow: { domains: ["api.openai.com"], cidrs: ["1.1.1.1/32"] },
      },
    });
    expect(networkPolicyFrom({ mode: "deny-all" })).toEqual({ mode: "deny-all" });
  });

  it("shows a sandbox in Leap0's shape with its state names", () => {
    expect(sandboxOf(record)).toEqual({
      id: record.id,
      template_id: "base",
      vcpu: 2,
      memory_mib: 1024,
      disk_mib: 4096,
      state: "running",
      auto_pause: true,
      network_policy: {
        mode: "custom",
        allow_domains: ["api.openai.com"],
        allow_cidrs: ["1.1.1.1"],
        transforms: [
          { domain: "api.openai.com", inject_headers: { Authorization: "[redacted]" }, strip_headers: ["x-a"] },
        ],
      },
      created_at: "2024-01-01T00:00:00.000Z",
    });
    expect(sandboxStatuses.map(stateOf)).toEqual([
      "starting",
      "running",
      "snapshotting",
      "paused",
      "unpausing",
      "deleting",
      "deleted",
      "deleted",
    ]);
  });

  it("pages and sorts lists", () => {
    const at = (n: number, status: SandboxRecord["status"]) => ({ ...record, id: `s${n}`, createdAt: n, status });
    const records = [at(1, "running"), at(3, "paused"), at(2, "running")];
    const page = (q: Record<string, string>) => pageOf(records, listQuerySchema.parse(q));
    expect(page({}).items.map((s) => s.id)).toEqual(["s3", "s2", "s1"]);
    expect(page({}).total_items).toBe(3);
    expect(page({ "order-by": "asc", "page-size": "2", page: "2" }).items.map((s) => s.id)).toEqual(["s3"]);
    expect(page({ sort: "state", "order-by": "asc" }).items.map((s) => s.state)).toEqual([
      "paused",
      "running",
      "running",
    ]);
  });

  it("reads the sandbox limit setting", () => {
    expect(leap0MaxSandboxes(undefined)).toBe(3);
    expect(leap0MaxSandboxes("5")).toBe(5);
    expect(leap0MaxSandboxes("0")).toBeUndefined();
    expect(() => leap0MaxSandboxes("three")).toThrow(/SANDPIT_LEAP0_MAX_SANDBOXES/);
  });

  it("answers errors in Leap0's shapes", () => {
    expect(leap0Field("resources.memoryMb")).toBe("memory_mib");
    expect(leap0Field("env.1BAD")).toBe("env_vars.1BAD");
    expect(leap0Field("networkPolicy.transforms.0.injectHeaders.bad name")).toBe(
      "network_policy.transforms.0.inject_headers.bad name",
    );
    const invalid = errorReplyOf(
      new ApiError("validation_failed", "x", {
        fields: [{ field: "resources.vcpus", rule: "too_big", message: "max 8" }],
      }),
    );
    expect(invalid).toEqual({
      status: 400,
      body: { message: "Invalid request", errors: [{ field: "vcpu", error: "max 8" }] },
    });
    expect(errorReplyOf(new ApiError("bad_request", "Malformed request body")).body).toEqual({
      message: "Invalid request",
      errors: [{ field: "body", error: "Malformed request body" }],
    });
    expect(errorReplyOf(new ApiError("quota_exceeded", "q", { limit: "maxSandboxes", max: 3, current: 3 }))).toEqual({
      status: 409,
      body: { message: "Sandbox limit reached: at most 3 sandboxes per organization (3 in use)" },
    });
    expect(errorReplyOf(new ApiError("unauthorized", "Invalid API key"))).toEqual({
      status: 401,
      body: { message: "Invalid API key" },
    });
  });
});
