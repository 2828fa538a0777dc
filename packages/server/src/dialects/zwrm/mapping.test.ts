import { sandboxStatuses } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.js";
import { sandboxRecord } from "../sandbox-record.fixture.js";
import {
  checkFilePath,
  cidrsOverlap,
  createRequestFrom,
  egressOf,
  errorReplyOf,
  networkPolicyFrom,
  parseDuration,
  sandboxOf,
  statusesFor,
  statusOf,
} from "./mapping.js";
import { createSandboxSchema, execSchema, keepaliveSchema } from "./schemas.js";

const record = sandboxRecord({
  template: "python3.13",
  vcpus: 2,
  memoryMb: 2048,
  env: { B: "2", A: "1" },
  metadata: { team: "x" },
  timeoutMs: 600_000,
  expiresAt: Date.UTC(2024, 0, 1, 0, 10, 1),
});

const issues = (schema: { safeParse(v: unknown): { error?: { issues: { path: PropertyKey[] }[] } } }, v: unknown) =>
  schema.safeParse(v).error?.issues.map((i) => i.path.join(".")) ?? [];

describe("ZWRM mapping", () => {
  it("reads durations the way ZWRM writes them", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    for (const bad of ["", "5", "5 m", "m", "-1m", "1d", "1.m"]) expect(parseDuration(bad)).toBeUndefined();
  });

  it("applies the documented defaults, bounds and mode rules on create", () => {
    const body = createSandboxSchema.parse({ template: "base" });
    expect(body).toMatchObject({ template: "base", mode: "ephemeral", size: "shared-cpu-1x", env: {}, metadata: {} });
    expect(createRequestFrom(body)).toMatchObject({
      lifecycle: "ephemeral",
      timeoutMs: 300_000,
      timeoutAction: "destroy",
      resources: { vcpus: 1, memoryMb: 1024 },
    });
    expect(createSandboxSchema.parse({ template: "base", timeout: "24h" }).timeout).toBe(86_400_000);
    expect(issues(createSandboxSchema, {})).toEqual(["template"]);
    expect(issues(createSandboxSchema, { template: "base", timeout: "25h" })).toEqual(["timeout"]);
    expect(issues(createSandboxSchema, { template: "base", timeout: "soon" })).toEqual(["timeout"]);
    expect(issues(createSandboxSchema, { template: "base", mode: "forever" })).toEqual(["mode"]);
    expect(issues(createSandboxSchema, { template: "base", size: "huge" })).toEqual(["size"]);
    expect(issues(createSandboxSchema, { template: "base", mode: "persistent", timeout: "5m" })).toEqual(["timeout"]);
    expect(issues(createSandboxSchema, { template: "base", idle_timeout: "5m" })).toEqual(["idle_timeout"]);
    expect(issues(createSandboxSchema, { template: "base", region: "eu" })).toEqual([""]);
  });

  it("maps persistent sandboxes onto Sandpit's persistent lifecycle with auto-resume", () => {
    const persistent = createRequestFrom(
      createSandboxSchema.parse({ template: "base", mode: "persistent", idle_timeout: "2m", size: "shared-cpu-2x" }),
    );
    expect(persistent).toMatchObject({
      lifecycle: "persistent",
      idleTimeoutMs: 120_000,
      autoResume: true,
      resources: { vcpus: 2, memoryMb: 2048 },
    });
    expect(persistent.timeoutMs).toBeUndefined();
    expect(createRequestFrom(createSandboxSchema.parse({ template: "base", mode: "persistent" })).idleTimeoutMs).toBe(
      600_000,
    );
  });

  it("validates egress policies as ZWRM documents and maps them onto Sandpit's", () => {
    const egress = (e: unknown) => issues(createSandboxSchema, { template: "base", egress: e });
    expect(egress({ mode: "block" })).toEqual(["egress.mode"]);
    expect(egress({})).toEqual(["egress.mode"]);
    expect(egress({ mode: "allow_all", allow_cidrs: ["1.1.1.1/32"] })).toEqual(["egress.allow_cidrs"]);
    expect(egress({ mode: "deny_all", allow_ports: [443] })).toEqual(["egress.allow_ports"]);
    expect(egress({ mode: "deny_all", deny_cidrs: ["169.254.169.254/32"] })).toEqual(["egress.deny_cidrs.0"]);
    expect(egress({ mode: "deny_all", allow_cidrs: ["1.1.1.300/32"] })).toEqual(["egress.allow_cidrs.0"]);
    expect(egress({ mode: "deny_all", allow_cidrs: ["1.1.1.1/32"], allow_ports: [0, 65_536] })).toEqual([
      "egress.allow_ports.0",
      "egress.allow_ports.1",
    ]);
    expect(networkPolicyFrom({ mode: "allow_all" })).toEqual({ mode: "allow-all" });
    expect(networkPolicyFrom({ mode: "deny_all" })).toEqual({ mode: "deny-all" });
    const custom = networkPolicyFrom({
      mode: "deny_all",
      allow_cidrs: ["1.1.1.1/32"],
      allow_ports: [443],
      deny_cidrs: ["10.0.0.0/8"],
    });
    expect(custom).toEqual({
      mode: "custom",
      allow: { domains: [], cidrs: ["1.1.1.1/32"], ports: [443] },
      deny: { domains: [], cidrs: ["10.0.0.0/8"] },
    });
    expect(egressOf(custom)).toEqual({
      mode: "deny_all",
      allow_cidrs: ["1.1.1.1/32"],
      deny_cidrs: ["10.0.0.0/8"],
      allow_ports: [443],
    });
    expect(cidrsOverlap("0.0.0.0/0", "169.254.0.0/16")).toBe(true);
    expect(cidrsOverlap("169.254.1.1", "169.254.0.0/16")).toBe(true);
    expect(cidrsOverlap("10.0.0.0/8", "169.254.0.0/16")).toBe(false);
  });

  it("bounds exec and clamps keepalive", () => {
    expect(issues(execSchema, {})).toEqual(["command"]);
    expect(issues(execSchema, { command: "" })).toEqual(["command"]);
    expect(issues(execSchema, { command: "ls", timeout: "6m" })).toEqual(["timeout"]);
    expect(issues(execSchema, { command: "ls", workdir: "app" })).toEqual(["workdir"]);
    expect(execSchema.parse({ command: "ls", timeout: "5m" }).timeout).toBe(300_000);
    expect(keepaliveSchema.parse({ timeout: "48h" })?.timeout).toBe(86_400_000);
    expect(keepaliveSchema.parse(undefined)).toBeUndefined();
    expect(issues(keepaliveSchema, { timeout: "later" })).toEqual(["timeout"]);
  });

  it("checks upload and download paths", () => {
    expect(checkFilePath("/app//data/./f.txt")).toEqual({ path: "/app/data/f.txt" });
    expect(checkFilePath(undefined)).toEqual({ error: "is required" });
    expect(checkFilePath("/")).toEqual({ error: "must not be the root directory" });
    expect(checkFilePath("//.")).toEqual({ error: "must not be the root directory" });
    expect(checkFilePath("/app/../etc/passwd")).toEqual({ error: "must not contain '..'" });
    expect(checkFilePath("app/f")).toEqual({ error: "must be an absolute path" });
  });

  it("shows a sandbox in ZWRM's shape and folds statuses into its four", () => {
    expect(sandboxOf(record)).toEqual({
      id: record.id,
      template: "python3.13",
      mode: "ephemeral",
      status: "running",
      size: "shared-cpu-2x",
      vcpus: 2,
      memory_mb: 2048,
      timeout_seconds: 600,
      idle_timeout_seconds: null,
      expires_at: "2024-01-01T00:10:01.000Z",
      metadata: { team: "x" },
      egress: { mode: "allow_all" },
      created_at: "2024-01-01T00:00:00.000Z",
      started_at: "2024-01-01T00:00:01.000Z",
      destroyed_at: null,
    });
    const persistent = sandboxOf({ ...record, lifecycle: "persistent", idleTimeoutMs: 120_000, expiresAt: null });
    expect(persistent).toMatchObject({ mode: "persistent", timeout_seconds: null, idle_timeout_seconds: 120 });
    expect(sandboxOf({ ...record, vcpus: 1, memoryMb: 256 }).size).toBeNull();
    expect(sandboxStatuses.map(statusOf)).toEqual([
      "creating",
      "running",
      "suspended",
      "suspended",
      "running",
      "destroyed",
      "destroyed",
      "destroyed",
    ]);
    expect(statusesFor("suspended")).toEqual(["pausing", "paused"]);
  });

  it("answers errors in ZWRM's shape, naming ZWRM's fields", () => {
    const invalid = errorReplyOf(
      new ApiError("validation_failed", "x", {
        fields: [{ field: "idleTimeoutMs", rule: "too_big", message: "Too big" }],
      }),
    );
    expect(invalid).toEqual({
      status: 400,
      body: {
        error: "invalid request: idle_timeout: Too big",
        code: "invalid_request",
        fields: [{ field: "idle_timeout", message: "Too big" }],
      },
    });
    expect(errorReplyOf(new ApiError("payload_too_large", "too big")).status).toBe(400);
    expect(errorReplyOf(new ApiError("invalid_state", "not running"))).toEqual({
      status: 409,
      body: { error: "not running", code: "conflict" },
    });
    expect(errorReplyOf(new ApiError("forbidden", "other org")).status).toBe(403);
  });
});
