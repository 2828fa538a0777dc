import { desktopMouseRequestSchema, startDesktopStreamRequestSchema } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import {
  createRequestFrom,
  decodeMetadata,
  desktopRequestFrom,
  desktopStreamOf,
  desktopWindowOf,
  encodeMetadata,
  errorReplyOf,
  isVolumeId,
  memoryMbFor,
  normalizeCwd,
  nullspaceField,
  sandboxOf,
  statusOf,
  volumeAttachmentsOf,
} from "./mapping.js";
import { createSandboxSchema } from "./schemas.js";

const record: SandboxRecord = {
  id: "sbx_aaaaaaaaaaaaaaaaaaaa",
  orgId: "org",
  nodeId: "local",
  status: "running",
  reason: null,
  template: "base",
  vcpus: 1,
  memoryMb: 256,
  diskMb: 4096,
  env: {},
  metadata: { team: "x", n: "3", "nullspace.json_keys": '["n"]' },
  cwd: "/workspace",
  timeoutMs: 300_000,
  networkPolicy: { mode: "allow-all" },
  timeoutAction: "pause",
  lifecycle: "ephemeral",
  idleTimeoutMs: null,
  autoResume: true,
  hibernate: true,
  desktop: null,
  ports: [],
  allPorts: true,
  publicPorts: false,
  trafficToken: "tok",
  netIndex: 1,
  agentToken: "agent",
  user: null,
  mainCommandId: null,
  volumes: [],
  createdAt: Date.UTC(2024, 0, 1),
  startedAt: Date.UTC(2024, 0, 1, 0, 0, 1),
  expiresAt: Date.UTC(2024, 0, 1, 0, 5, 1),
  destroyedAt: null,
};

describe("Nullspace mapping", () => {
  it("normalizes cwd and refuses paths outside the root or under /workspace/.nullspace", () => {
    expect(normalizeCwd("/workspace//app/./src/../")).toEqual({ path: "/workspace/app" });
    expect(normalizeCwd("/")).toEqual({ path: "/" });
    expect(normalizeCwd("workspace")).toEqual({ error: "must be an absolute path" });
    expect(normalizeCwd("/../etc")).toEqual({ error: "must stay within the sandbox root" });
    expect("error" in normalizeCwd("/workspace/.nullspace")).toBe(true);
    expect("error" in normalizeCwd("/workspace/x/../.nullspace/run")).toBe(true);
    expect(normalizeCwd("/workspace/.nullspace-not")).toEqual({ path: "/workspace/.nullspace-not" });
  });

  it("applies the documented defaults and cross-field rules", () => {
    const body = createSandboxSchema.parse({});
    expect(body).toMatchObject({ template: "base", vcpus: 1, memory_mb: 256, timeout_ms: 300_000 });
    expect(body.auto_resume).toBe(false);
    expect(body.internet_access).toBe(true);
    expect(createSandboxSchema.parse({ cwd: null }).cwd).toBeUndefined();
    const issues = (input: unknown) =>
      createSandboxSchema.safeParse(input).error?.issues.map((i) => i.path.join(".")) ?? [];
    expect(issues({ auto_resume: true })).toEqual(["auto_resume"]);
    expect(issues({ auto_resume: true, timeout_action: "hibernate" })).toEqual([]);
    expect(issues({ auto_resume: true, lifecycle: { on_timeout: "pause" } })).toEqual([]);
    expect(issues({ timeout_action: "destroy", lifecycle: { on_timeout: "pause" } })).toEqual(["lifecycle.on_timeout"]);
    expect(issues({ snapshot_id: "snp_x", disk_mb: 1024 })).toEqual(["disk_mb"]);
    expect(issues({ disk_mb: 511 })).toEqual(["disk_mb"]);
    expect(issues({ disk_mb: 131_073 })).toEqual(["disk_mb"]);
    expect(issues({ vcpus: 0, memory_mb: 0 })).toEqual(["vcpus", "memory_mb"]);
    expect(issues({ warm_pool: { mode: "require" } })).toEqual(["warm_pool.id"]);
    expect(issues({ warm_pool: { mode: "bypass" } })).toEqual([]);
    expect(issues({ volumes: Array.from({ length: 9 }, () => ({})) })).toEqual(["volumes"]);
    expect(issues({ cwd: "/workspace/.nullspace/x" })).toEqual(["cwd"]);
    expect(issues({ metadata: { "nullspace.json_keys": "[]" } })).toEqual(["metadata.nullspace.json_keys"]);
  });

  it("maps a create request onto Sandpit's", () => {
    const native = createRequestFrom(
      createSandboxSchema.parse({
        template: "python3.13",
        memory_mb: 300,
        timeout_action: "hibernate",
        auto_resume: true,
        envs: { A: "1" },
        internet_access: false,
        network: { allow_public_traffic: false },
        warm_pool: { mode: "prefer", id: "small" },
        cwd: "/srv/app/",
      }),
    );
    expect(native).toMatchObject({
      template: "python3.13",
      resources: { vcpus: 1, memoryMb: 512 },
      timeoutAction: "pause",
      autoResume: true,
      env: { A: "1" },
      internetAccess: false,
      allPorts: true,
      publicPorts: false,
      warmPool: { mode: "prefer", poolId: "small" },
      cwd: "/srv/app",
    });
    expect(createRequestFrom(createSandboxSchema.parse({ template: "ubuntu:24.04" }))).toMatchObject({
      image: { uri: "ubuntu:24.04" },
    });
    const fromSnapshot = createRequestFrom(createSandboxSchema.parse({ snapshot_id: "snp_x" }));
    expect(fromSnapshot.snapshotId).toBe("snp_x");
    expect(fromSnapshot.template).toBeUndefined();
    expect(memoryMbFor(1)).toBe(256);
    expect(memoryMbFor(1024)).toBe(1024);
  });

  it("keeps any JSON metadata as it was sent", () => {
    const metadata = { team: "x", n: 3, nested: { a: [1, true, null] }, s: "7" };
    const stored = encodeMetadata(metadata);
    expect(stored.team).toBe("x");
    expect(stored.s).toBe("7");
    expect(decodeMetadata(stored)).toEqual(metadata);
    expect(encodeMetadata({ a: "b" })).toEqual({ a: "b" });
  });

  it("shows a sandbox in Nullspace's shape", () => {
    expect(sandboxOf(record, { withTrafficToken: true, checkout: { hit: true, poolId: "p" } })).toEqual({
      id: record.id,
      status: "running",
      config: { vcpus: 1, memory_mb: 256, disk_mb: 4096 },
      template: "base",
      created_at: "2024-01-01T00:00:00.000Z",
      metadata: { team: "x", n: 3 },
      started_at: "2024-01-01T00:00:01.000Z",
      timeout_ms: 300_000,
      timeout_at: "2024-01-01T00:05:01.000Z",
      expires_at: "2024-01-01T00:05:01.000Z",
      timeout_action: "hibernate",
      cwd: "/workspace",
      traffic_access_token: "tok",
      warm_pool_checkout: { hit: true, id: "p" },
    });
    const paused = sandboxOf({ ...record, status: "paused", expiresAt: null });
    expect(paused.status).toBe("paused");
    expect(paused.timeout_at).toBeUndefined();
    expect(paused.traffic_access_token).toBeUndefined();
    expect(sandboxOf({ ...record, template: "image:ubuntu:24.04" }).template).toBe("ubuntu:24.04");
    expect(["pausing", "resuming", "destroying", "creating", "error"].map((s) => statusOf(s as "creating"))).toEqual([
      "paused",
      "running",
      "destroyed",
      "creating",
      "error",
    ]);
  });

  it("maps shared volume mounts and shows them as volume_attachments in request order", () => {
    const body = createSandboxSchema.parse({
      volumes: [
        { ref: "team-data", mount_path: "/workspace/shared" },
        { ref: "models", mount_path: "/models", subpath: "/published-models", read_only: true },
        { ref: "root-sub", mount_path: "/r", subpath: "/" },
      ],
    });
    expect(createRequestFrom(body).volumes).toEqual([
      { name: "team-data", mountPath: "/workspace/shared", readOnly: false },
      { name: "models", mountPath: "/models", readOnly: true, subPath: "published-models" },
      { name: "root-sub", mountPath: "/r", readOnly: false },
    ]);
    expect(createRequestFrom(createSandboxSchema.parse({ volumes: null })).volumes).toBeUndefined();
    const issues = (input: unknown) =>
      createSandboxSchema.safeParse(input).error?.issues.map((i) => i.path.join(".")) ?? [];
    expect(issues({ volumes: [{ ref: "v" }] })).toEqual(["volumes.0.mount_path"]);
    expect(issues({ volumes: [{ mount_path: "/m" }] })).toEqual(["volumes.0.ref"]);
    expect(issues({ volumes: [{ ref: "v", mount_path: "/workspace/.nullspace/v" }] })).toEqual([
      "volumes.0.mount_path",
    ]);
    expect(issues({ volumes: [{ ref: "v", mount_path: "/workspace/x/../.nullspace" }] })).toEqual([
      "volumes.0.mount_path",
    ]);
    expect(issues({ volumes: [{ ref: "v", mount_path: "/m", read_only: "yes" }] })).toEqual(["volumes.0.read_only"]);
    expect(issues({ volumes: [{ ref: "v", mount_path: "/m", path: "/m" }] })).toEqual(["volumes.0"]);
    expect(issues({ volumes: Array.from({ length: 9 }, (_, i) => ({ ref: `v${i}`, mount_path: `/m${i}` })) })).toEqual([
      "volumes",
    ]);
    expect(issues({ metadata: { volume_attachments: [] } })).toEqual(["metadata.volume_attachments"]);

    const mounted: SandboxRecord = {
      ...record,
      volumes: [
        { volumeId: "vol_a", name: "team-data", mountPath: "/workspace/shared", readOnly: false },
        { volumeId: "vol_b", name: "models", mountPath: "/models", readOnly: true, subPath: "published-models" },
      ],
    };
    expect(sandboxOf(mounted).metadata).toEqual({
      team: "x",
      n: 3,
      volume_attachments: [
        {
          id: `${record.id}.volumes.0`,
          volume_id: "vol_a",
          volume_name: "team-data",
          mount_path: "/workspace/shared",
          subpath: "/",
          read_only: false,
          state: "mounted",
        },
        {
          id: `${record.id}.volumes.1`,
          volume_id: "vol_b",
          volume_name: "models",
          mount_path: "/models",
          subpath: "/published-models",
          read_only: true,
          state: "mounted",
        },
      ],
    });
    const states = ["creating", "paused", "resuming", "destroying", "destroyed", "error"] as const;
    expect(states.map((status) => volumeAttachmentsOf({ ...mounted, status })[0]?.state)).toEqual([
      "mounting",
      "paused",
      "remounting",
      "releasing",
      "released",
      "failed",
    ]);
    expect(isVolumeId("vol_abc")).toBe(true);
    expect(isVolumeId("team-data")).toBe(false);
  });

  it("names Nullspace's volume fields in errors", () => {
    expect(nullspaceField("volumes.2.name")).toBe("volumes.2.ref");
    expect(nullspaceField("volumes.0.mountPath")).toBe("volumes.0.mount_path");
    expect(nullspaceField("volumes.1.subPath")).toBe("volumes.1.subpath");
    expect(nullspaceField("volumes.1.readOnly")).toBe("volumes.1.read_only");
    const missing = errorReplyOf(
      new ApiError("volume_not_found", "x", {
        fields: [{ field: "volumes.0.name", rule: "not_found", message: "volume nope not found" }],
      }),
      "req",
    );
    expect(missing.status).toBe(404);
    expect(missing.body.error).toEqual({
      code: "not_found",
      message: "volumes.0.ref: volume nope not found",
      status: 404,
      request_id: "req",
      fields: [{ field: "volumes.0.ref", message: "volume nope not found" }],
    });
    expect(errorReplyOf(new ApiError("volume_in_use", "in use"), "r").body.error.code).toBe("conflict");
  });

  it("answers errors in Nullspace's shape", () => {
    const missing = errorReplyOf(
      new ApiError("validation_failed", "x", {
        fields: [{ field: "Idempotency-Key", rule: "required", message: "header is required" }],
      }),
      "req1",
    );
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: "idempotency_key_required", status: 400, request_id: "req1" });
    const conflict = errorReplyOf(new ApiError("idempotency_mismatch", "different request"), "req2");
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe("idempotency_key_conflict");
    const invalid = errorReplyOf(
      new ApiError("validation_failed", "x", {
        fields: [{ field: "resources.memoryMb", rule: "too_big", message: "Too big" }],
      }),
      "req3",
    );
    expect(invalid.body.error).toEqual({
      code: "invalid_request",
      message: "Invalid request: memory_mb: Too big",
      status: 400,
      request_id: "req3",
      fields: [{ field: "memory_mb", message: "Too big" }],
    });
    expect(errorReplyOf(new ApiError("not_implemented", "no desktop"), "r").body.error.code).toBe("not_supported");
  });

  it("maps the desktop create object: Sandpit's settings, the desktop template when none is named", () => {
    const body = createSandboxSchema.parse({ desktop: { width: 800, height: 600 } });
    expect(body.template).toBe("desktop");
    expect(createRequestFrom(body)).toMatchObject({
      template: "desktop",
      desktop: { width: 800, height: 600, dpi: 96 },
    });
    expect(createRequestFrom(createSandboxSchema.parse({ template: "base", desktop: {} })).desktop).toEqual({
      width: 1024,
      height: 768,
      dpi: 96,
    });
    const none = createSandboxSchema.parse({ desktop: null });
    expect(none.template).toBe("base");
    expect(createRequestFrom(none).desktop).toBeUndefined();
    const issues = (input: unknown) =>
      createSandboxSchema.safeParse(input).error?.issues.map((i) => i.path.join(".")) ?? [];
    expect(issues({ desktop: { width: 10 } })).toEqual(["desktop.width"]);
    expect(issues({ desktop: { height: "600" } })).toEqual(["desktop.height"]);
    expect(issues({ desktop: { resolution: "1024x768" } })).toEqual(["desktop"]);
    expect(issues({ desktop: "yes" })).toEqual(["desktop"]);
  });

  it("shows a sandbox's desktop settings", () => {
    const desktop = { width: 800, height: 600, dpi: 96, startedByClient: true };
    expect(sandboxOf({ ...record, desktop }).desktop).toEqual({ width: 800, height: 600, dpi: 96 });
    expect(sandboxOf({ ...record, desktop: null }).desktop).toBeUndefined();
  });

  it("takes desktop bodies in snake_case and names Nullspace's fields in their errors", () => {
    expect(desktopRequestFrom(desktopMouseRequestSchema, { action: "drag", x: 5, y: 6, from_x: 1, from_y: 2 })).toEqual(
      { action: "drag", x: 5, y: 6, fromX: 1, fromY: 2 },
    );
    expect(desktopRequestFrom(startDesktopStreamRequestSchema, { view_only: true })).toEqual({ viewOnly: true });
    const fieldsOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return errorReplyOf(e as ApiError, "r").body.error.fields?.map((x) => x.field);
      }
      return [];
    };
    expect(
      fieldsOf(() => desktopRequestFrom(desktopMouseRequestSchema, { action: "drag", x: 1, y: 1, from_x: 1 })),
    ).toEqual(["from_y"]);
    expect(
      fieldsOf(() => desktopRequestFrom(desktopMouseRequestSchema, { action: "move", x: 1, y: 1, fromX: 1 })),
    ).toEqual(["fromX"]);
    expect(fieldsOf(() => desktopRequestFrom(startDesktopStreamRequestSchema, { view_only: "no" }))).toEqual([
      "view_only",
    ]);
    expect(errorReplyOf(new ApiError("desktop_unavailable", "no desktop"), "r").body.error).toMatchObject({
      code: "conflict",
      status: 409,
    });
  });

  it("shows desktop windows and live views in snake_case", () => {
    const window = { id: 1, title: "t", className: "C", instanceName: "c", pid: null, x: 0, y: 0, width: 1, height: 1 };
    expect(desktopWindowOf({ ...window, focused: true })).toEqual({
      id: 1,
      title: "t",
      class_name: "C",
      instance_name: "c",
      pid: null,
      x: 0,
      y: 0,
      width: 1,
      height: 1,
      focused: true,
    });
    const stream = { streamId: "s", viewOnly: false, url: "u", token: "t", startedAt: "2024", expiresAt: null };
    expect(desktopStreamOf(stream)).toEqual({
      stream_id: "s",
      view_only: false,
      url: "u",
      token: "t",
      started_at: "2024",
      expires_at: null,
    });
  });
});
