import { Readable } from "node:stream";
import zlib from "node:zlib";
import { createSandboxRequestSchema, networkPolicySchema as sandpitPolicySchema } from "@sandpit/contract";
import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { sandboxRecord } from "../sandbox-record.fixture.js";
import { createRequestFrom, errorReplyOf, META, sandboxOf, sessionOf, statusOf, vercelField } from "./mapping.js";
import { toSandpitPolicy, toVercelPolicy } from "./network-policy.js";
import { createSandboxSchema, networkPolicySchema } from "./schemas.js";
import { unpackArchive } from "./tar-upload.js";

const record: SandboxRecord = sandboxRecord({
  template: "node24",
  vcpus: 2,
  memoryMb: 4096,
  metadata: { [META.name]: "web", [META.persistent]: "true", [META.timeout]: "600000", [`${META.tagPrefix}env`]: "ci" },
  cwd: "/vercel/sandbox",
  timeoutMs: 600_000,
  timeoutAction: "pause",
  ports: [3000],
  publicPorts: true,
  createdAt: 1_000,
  startedAt: 2_000,
  expiresAt: 902_000,
});

const issues = (schema: { safeParse(v: unknown): { error?: { issues: { path: PropertyKey[] }[] } } }, v: unknown) =>
  schema.safeParse(v).error?.issues.map((i) => i.path.join(".")) ?? [];

describe("Vercel create", () => {
  const v2 = createSandboxSchema("v2");

  it("applies the seed's defaults and rules: vcpus 1 or even, memory = vcpus × 2048, at most 4 ports on v1", () => {
    const body = v2.parse({});
    expect(body).toMatchObject({ timeout: 300_000, env: {}, ports: [], tags: {} });
    expect(issues(v2, { resources: { vcpus: 3 } })).toEqual(["resources.vcpus"]);
    expect(issues(v2, { resources: { vcpus: 2, memory: 2048 } })).toEqual(["resources.memory"]);
    expect(issues(v2, { resources: { vcpus: 4, memory: 8192 } })).toEqual([]);
    expect(issues(v2, { runtime: "node18" })).toEqual(["runtime"]);
    expect(issues(v2, { timeout: 10 })).toEqual(["timeout"]);
    expect(issues(v2, { source: { type: "snapshot", snapshotId: "snp_x" }, runtime: "node22" })).toEqual(["runtime"]);
    expect(issues(v2, { source: { type: "git", url: "https://x", username: "u" } })).toEqual(["source.password"]);
    expect(issues(v2, { name: "sessions" })).toEqual(["name"]);
    expect(issues(v2, { surprise: 1 })).toEqual([""]);
    expect(issues(createSandboxSchema("v1"), { ports: [1, 2, 3, 4, 5] })).toEqual(["ports"]);
    expect(issues(createSandboxSchema("v1"), { name: "x" })).toEqual(["name"]);
    expect(issues(v2, { ports: [1, 2, 3, 4, 5] })).toEqual([]);
  });

  it("maps onto Sandpit's create: runtime template, 2048 MB per vCPU, persistent pauses, public ports", () => {
    const native = createRequestFrom(
      v2.parse({
        name: "web",
        runtime: "python3.13",
        resources: { vcpus: 4 },
        timeout: 600_000,
        env: { A: "1" },
        ports: [3000],
        projectId: "prj_1",
        tags: { env: "ci" },
        source: { type: "git", url: "https://example.com/r.git", revision: "main", depth: 1 },
      }),
      true,
    );
    expect(native).toMatchObject({
      template: "python3.13",
      resources: { vcpus: 4, memoryMb: 8192 },
      timeoutMs: 600_000,
      timeoutAction: "pause",
      env: { A: "1" },
      cwd: "/vercel/sandbox",
      ports: [3000],
      publicPorts: true,
      source: { type: "git", url: "https://example.com/r.git", ref: "main", depth: 1 },
      metadata: {
        [META.name]: "web",
        [META.persistent]: "true",
        [META.projectId]: "prj_1",
        [META.timeout]: "600000",
        [`${META.tagPrefix}env`]: "ci",
      },
    });
    expect(createSandboxRequestSchema.safeParse(native).success).toBe(true);
    const plain = createRequestFrom(v2.parse({}), false);
    expect(plain).toMatchObject({
      template: "node24",
      resources: { vcpus: 2, memoryMb: 4096 },
      timeoutAction: "destroy",
    });
    const fromSnapshot = createRequestFrom(
      v2.parse({ source: { type: "snapshot", snapshotId: "snp_aaaaaaaaaaaaaaaaaaaa" } }),
      true,
    );
    expect(fromSnapshot.snapshotId).toBe("snp_aaaaaaaaaaaaaaaaaaaa");
    expect(fromSnapshot.template).toBeUndefined();
    expect(fromSnapshot.metadata?.[META.sourceSnapshotId]).toBe("snp_aaaaaaaaaaaaaaaaaaaa");
  });
});

describe("Vercel network policies", () => {
  const sandpit = (p: unknown) => sandpitPolicySchema.parse(toSandpitPolicy(networkPolicySchema.parse(p)));

  it("maps the seed's modes: default-allow allows every name and address but what is denied", () => {
    expect(sandpit({ mode: "allow-all" })).toEqual({ mode: "allow-all" });
    expect(sandpit({ mode: "deny-all" })).toEqual({ mode: "deny-all" });
    expect(
      sandpit({ mode: "default-allow", deniedDomains: ["bad.example.com"], deniedCIDRs: ["10.0.0.0/8"] }),
    ).toMatchObject({
      mode: "custom",
      allow: { domains: ["*"], cidrs: ["0.0.0.0/0"] },
      deny: { domains: ["bad.example.com"], cidrs: ["10.0.0.0/8"] },
    });
    for (const mode of ["default-deny", "custom"]) {
      expect(sandpit({ mode, allowedDomains: ["*.npmjs.org"], allowedCIDRs: ["1.2.3.4/32"] })).toMatchObject({
        mode: "custom",
        allow: { domains: ["*.npmjs.org"], cidrs: ["1.2.3.4/32"] },
        deny: { domains: [], cidrs: [] },
      });
    }
    expect(issues(networkPolicySchema, { mode: "allow-all", allowedDomains: ["x.com"] })).toContain("allowedDomains");
    expect(issues(networkPolicySchema, { mode: "custom", allowedCIDRs: ["nope"] })).toContain("allowedCIDRs.0");
  });

  it("maps the SDK's allow lists, subnets and header transforms; refuses what Sandpit cannot do", () => {
    expect(sandpit({ allow: ["github.com"], subnets: { deny: ["10.0.0.0/8"] } })).toMatchObject({
      mode: "custom",
      allow: { domains: ["github.com"], cidrs: [] },
      deny: { cidrs: ["10.0.0.0/8"] },
    });
    const brokered = sandpit({
      allow: { "ai.example.com": [{ transform: [{ headers: { authorization: "Bearer s" } }] }], "*": [] },
    });
    expect(brokered).toMatchObject({
      allow: { domains: ["ai.example.com", "*"] },
      transforms: [{ domain: "ai.example.com", injectHeaders: { authorization: "Bearer s" } }],
    });
    expect(toVercelPolicy(brokered)).toEqual({
      mode: "custom",
      allowedDomains: ["ai.example.com", "*"],
      injectionRules: [{ domain: "ai.example.com", headerNames: ["authorization"] }],
    });
    const refused = (p: unknown) => {
      try {
        toSandpitPolicy(networkPolicySchema.parse(p));
      } catch (e) {
        return e instanceof ApiError ? e.code : "other";
      }
      return "accepted";
    };
    expect(refused({ allow: { "x.com": [{ forwardURL: "https://y" }] } })).toBe("not_implemented");
    expect(refused({ allow: { "x.com": [{ match: { method: ["GET"] }, transform: [{}] }] } })).toBe("not_implemented");
    expect(refused({ allow: { "*": [{ transform: [{ headers: { a: "b" } }] }] } })).toBe("not_implemented");
  });
});

describe("Vercel shapes", () => {
  it("shows a Sandpit sandbox as a Vercel sandbox and session", () => {
    expect(sessionOf(record)).toEqual({
      id: record.id,
      memory: 4096,
      vcpus: 2,
      region: "sandpit",
      runtime: "node24",
      timeout: 900_000,
      status: "running",
      requestedAt: 1_000,
      startedAt: 2_000,
      createdAt: 1_000,
      cwd: "/vercel/sandbox",
      updatedAt: 2_000,
      networkPolicy: { mode: "allow-all" },
    });
    expect(sandboxOf(record)).toMatchObject({
      name: "web",
      persistent: true,
      timeout: 600_000,
      currentSessionId: record.id,
      status: "running",
      tags: { env: "ci" },
      expiresAt: 902_000,
    });
    const destroyed = sessionOf({ ...record, status: "destroyed", destroyedAt: 5_000, expiresAt: null });
    expect(destroyed).toMatchObject({ status: "stopped", stoppedAt: 5_000, duration: 3_000, timeout: 600_000 });
    expect(sandboxOf({ ...record, metadata: {} }).name).toBe(record.id);
    expect((["creating", "pausing", "paused", "resuming", "destroying", "error"] as const).map(statusOf)).toEqual([
      "pending",
      "stopping",
      "stopped",
      "pending",
      "stopping",
      "failed",
    ]);
  });

  it("answers errors in Vercel's shape: 403 for keys, 410/422 for stopped sessions, Vercel field names", () => {
    expect(errorReplyOf(new ApiError("unauthorized", "x"), false)).toEqual({
      status: 403,
      body: {
        error: { code: "forbidden", message: "The request is missing an authentication token", missingToken: true },
      },
    });
    expect(errorReplyOf(new ApiError("unauthorized", "x"), true).body.error).toMatchObject({ invalidToken: true });
    const stopped = errorReplyOf(new ApiError("invalid_state", "x", { status: "paused" }), true);
    expect([stopped.status, stopped.body.error.code]).toEqual([410, "sandbox_stopped"]);
    const stopping = errorReplyOf(new ApiError("invalid_state", "x", { status: "destroying" }), true);
    expect([stopping.status, stopping.body.error.code]).toEqual([422, "sandbox_stopping"]);
    const invalid = errorReplyOf(
      new ApiError("validation_failed", "x", {
        fields: [{ field: "networkPolicy.allow.domains.0", rule: "invalid_format", message: "must be a domain" }],
      }),
      true,
    );
    expect(invalid).toEqual({
      status: 400,
      body: {
        error: {
          code: "bad_request",
          message: "Invalid request: networkPolicy.allowedDomains.0: must be a domain",
          fields: [{ field: "networkPolicy.allowedDomains.0", rule: "invalid_format", message: "must be a domain" }],
        },
      },
    });
    expect(errorReplyOf(new ApiError("sandbox_not_found", "gone"), true)).toMatchObject({
      status: 404,
      body: { error: { code: "not_found" } },
    });
    expect(errorReplyOf(new ApiError("not_implemented", "no"), true)).toMatchObject({
      status: 501,
      body: { error: { code: "not_supported" } },
    });
    expect(vercelField("resources.memoryMb")).toBe("resources.memory");
    expect(vercelField("timeoutMs")).toBe("timeout");
  });
});

/** A gzip tar archive like the SDK's `writeFiles` sends. */
async function archive(entries: { name: string; content?: string; type?: "directory" | "symlink"; mode?: number }[]) {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type) pack.entry({ name: e.name, type: e.type, ...(e.type === "symlink" ? { linkname: "x" } : {}) });
    else pack.entry({ name: e.name, ...(e.mode ? { mode: e.mode } : {}) }, e.content ?? "");
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of Readable.from(pack).pipe(zlib.createGzip())) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("fs/write archives", () => {
  const collect = () => {
    const written: { path: string; content: string; mode: number | undefined }[] = [];
    const dirs: string[] = [];
    return {
      written,
      dirs,
      target: {
        async writeFile(path: string, content: Readable, _size: number, mode: number | undefined) {
          let text = "";
          for await (const c of content) text += (c as Buffer).toString();
          written.push({ path, content: text, mode });
        },
        async mkdir(path: string) {
          dirs.push(path);
        },
      },
    };
  };

  it("writes each file under the extract directory with its mode, and never above /", async () => {
    const { written, dirs, target } = collect();
    const body = await archive([
      { name: "vercel/sandbox/a.txt", content: "hello", mode: 0o755 },
      { name: "vercel/sandbox/sub", type: "directory" },
      { name: "../../etc/b.txt", content: "" },
    ]);
    expect(await unpackArchive(Readable.from([body]), "/", 1 << 20, target)).toBe(3);
    expect(written).toEqual([
      { path: "/vercel/sandbox/a.txt", content: "hello", mode: 0o755 },
      { path: "/etc/b.txt", content: "", mode: 0o644 },
    ]);
    expect(dirs).toEqual(["/vercel/sandbox/sub"]);
  });

  it("refuses a body that is not a gzip tar, links, and archives over the size limit", async () => {
    const code = (p: Promise<unknown>) => p.then(() => "ok").catch((e) => (e instanceof ApiError ? e.code : String(e)));
    expect(await code(unpackArchive(Readable.from([Buffer.from("plain text")]), "/", 1 << 20, collect().target))).toBe(
      "bad_request",
    );
    const link = await archive([{ name: "l", type: "symlink" }]);
    expect(await code(unpackArchive(Readable.from([link]), "/", 1 << 20, collect().target))).toBe("not_implemented");
    const big = await archive([{ name: "big", content: "x".repeat(100_000) }]);
    expect(await code(unpackArchive(Readable.from([big]), "/", 100, collect().target))).toBe("payload_too_large");
  });
});
