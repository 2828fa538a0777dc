import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.js";
import { lifecycleErrorReply } from "./errors.js";
import { logLines } from "./execd-commands.js";
import { globMatcher, modeFromExecd, modeToExecd, parseRange } from "./execd-files.js";
import {
  mergeRules,
  networkPolicyFrom,
  networkPolicyOf,
  pageOf,
  parseBytes,
  parseCpu,
  parseMetadataFilter,
  resourcesFrom,
  statusesFor,
  templateAliasOf,
  volumesFrom,
} from "./mapping.js";

describe("image URIs", () => {
  it("maps the Docker Hub images Sandpit's templates stand for, and nothing else", () => {
    expect(templateAliasOf("python:3.13")).toBe("python3.13");
    expect(templateAliasOf("docker.io/library/python:3.13-slim")).toBe("python3.13");
    expect(templateAliasOf("node:24")).toBe("node24");
    expect(templateAliasOf("node:22.11-trixie-slim")).toBe("node22");
    expect(templateAliasOf("python:3.13-slim-trixie")).toBe("python3.13");
    expect(templateAliasOf("node:22-bookworm")).toBeUndefined();
    expect(templateAliasOf("ubuntu")).toBe("base");
    expect(templateAliasOf("debian:trixie")).toBe("base");
    expect(templateAliasOf("ubuntu:22.04")).toBeUndefined();
    expect(templateAliasOf("python:3.11")).toBeUndefined();
    expect(templateAliasOf("ghcr.io/acme/python:3.13")).toBeUndefined();
  });
});

describe("resource limits", () => {
  it("parses Kubernetes quantities", () => {
    expect(parseCpu("500m")).toBe(0.5);
    expect(parseCpu("2")).toBe(2);
    expect(parseCpu("1.5")).toBe(1.5);
    expect(parseCpu("two")).toBeUndefined();
    expect(parseBytes("512Mi")).toBe(512 * 2 ** 20);
    expect(parseBytes("1Gi")).toBe(2 ** 30);
    expect(parseBytes("2G")).toBe(2e9);
    expect(parseBytes("1048576")).toBe(2 ** 20);
    expect(parseBytes("lots")).toBeUndefined();
  });

  it("rounds CPU up to whole vCPUs and memory up to 256 MiB steps, and names what it refuses", () => {
    expect(resourcesFrom({ cpu: "500m", memory: "512Mi" })).toEqual({
      resources: { vcpus: 1, memoryMb: 512 },
      issues: [],
    });
    expect(resourcesFrom({ cpu: "1500m", memory: "1G", "ephemeral-storage": "10Gi" }).resources).toEqual({
      vcpus: 2,
      memoryMb: 1024,
      diskMb: 10_240,
    });
    expect(resourcesFrom({ gpu: "0" }).issues).toEqual([]);
    const refused = resourcesFrom({ cpu: "x", gpu: "1", "example.com/fpga": "1" }).issues.map((i) => i.field);
    expect(refused).toEqual(["resourceLimits.cpu", "resourceLimits.gpu", "resourceLimits.example.com/fpga"]);
  });
});

describe("network policy", () => {
  it("maps default actions and rules onto Sandpit's modes", () => {
    expect(networkPolicyFrom(undefined)).toBeUndefined();
    expect(networkPolicyFrom({})).toBeUndefined();
    expect(networkPolicyFrom({ defaultAction: "deny" })).toEqual({ mode: "deny-all" });
    expect(networkPolicyFrom({ defaultAction: "allow", egress: [{ action: "allow", target: "a.com" }] })).toEqual({
      mode: "allow-all",
    });
    // Without defaultAction the sidecar denies by default.
    expect(
      networkPolicyFrom({
        egress: [
          { action: "allow", target: "pypi.org" },
          { action: "allow", target: "10.0.0.1" },
        ],
      }),
    ).toEqual({
      mode: "custom",
      allow: { domains: ["pypi.org"], cidrs: ["10.0.0.1/32"] },
      deny: { domains: [], cidrs: [] },
    });
    expect(
      networkPolicyFrom({ defaultAction: "allow", egress: [{ action: "deny", target: "bad.example.com" }] }),
    ).toEqual({
      mode: "custom",
      allow: { domains: [], cidrs: ["0.0.0.0/0"] },
      deny: { domains: ["bad.example.com"], cidrs: [] },
    });
  });

  it("lets the first rule for a target decide, and reads Sandpit policies back", () => {
    const policy = networkPolicyFrom({
      defaultAction: "deny",
      egress: [
        { action: "allow", target: "x.com" },
        { action: "deny", target: "x.com" },
      ],
    });
    expect(policy).toMatchObject({ allow: { domains: ["x.com"] }, deny: { domains: [] } });
    expect(networkPolicyOf({ mode: "allow-all" })).toEqual({ defaultAction: "allow", egress: [] });
    expect(
      networkPolicyOf({
        mode: "custom",
        allow: { domains: [], cidrs: ["0.0.0.0/0"], ports: [] },
        deny: { domains: ["bad.com"], cidrs: [] },
      }),
    ).toEqual({ defaultAction: "allow", egress: [{ action: "deny", target: "bad.com" }] });
  });

  it("merges patched rules in front of the current ones", () => {
    const current = { defaultAction: "deny" as const, egress: [{ action: "allow" as const, target: "a.com" }] };
    expect(
      mergeRules(current, [
        { action: "deny", target: "A.com" },
        { action: "allow", target: "b.com" },
        { action: "allow", target: "b.com" },
      ]),
    ).toEqual({
      defaultAction: "deny",
      egress: [
        { action: "deny", target: "A.com" },
        { action: "allow", target: "b.com" },
      ],
    });
  });
});

describe("volumes", () => {
  it("maps pvc claims to named volumes (made when missing) and host paths with their subPath", () => {
    const out = volumesFrom([
      { name: "a", mountPath: "/a", pvc: { claimName: "data", storage: "2Gi" }, subPath: "x", readOnly: true },
      { name: "b", mountPath: "/b", pvc: { claimName: "old", createIfNotExists: false } },
      { name: "c", mountPath: "/c", host: { path: "/srv/share/" }, subPath: "team" },
    ]);
    expect(out.mounts).toEqual([
      { mountPath: "/a", readOnly: true, name: "data", subPath: "x" },
      { mountPath: "/b", readOnly: false, name: "old" },
      { mountPath: "/c", readOnly: false, hostPath: "/srv/share/team" },
    ]);
    expect(out.wanted).toEqual([{ name: "data", sizeMb: 2048 }]);
    expect(out.issues).toEqual([]);
  });

  it("names what it cannot mount", () => {
    expect(volumesFrom([{ name: "o", mountPath: "/o", ossfs: {} }]).unsupported?.field).toBe("volumes.0.ossfs");
    const twice = volumesFrom([
      { name: "a", mountPath: "/a", host: { path: "/x" }, pvc: { claimName: "y" } },
      { name: "a", mountPath: "/b", pvc: { claimName: "y", storage: "big" } },
    ]);
    expect(twice.issues.map((i) => i.field)).toEqual(["volumes.0", "volumes.1.name", "volumes.1.pvc.storage"]);
  });
});

describe("lists", () => {
  it("matches states case-insensitively and decodes the metadata filter", () => {
    expect(statusesFor(["Running"])).toEqual(["running"]);
    expect(statusesFor(["paused", "Terminated"])).toEqual(["paused", "destroyed"]);
    expect(statusesFor(["Nope"])).toEqual([]);
    expect(parseMetadataFilter("project=Apollo&note=Demo%2520Test")).toEqual({ project: "Apollo", note: "Demo Test" });
    expect(parseMetadataFilter("discount=100%25")).toEqual({ discount: "100%" });
  });

  it("pages with OpenSandbox's pagination block", () => {
    expect(pageOf([1, 2, 3, 4, 5], 2, 2)).toEqual({
      items: [3, 4],
      pagination: { page: 2, pageSize: 2, totalItems: 5, totalPages: 3, hasNextPage: true },
    });
    expect(pageOf([], 1, 20).pagination).toEqual({
      page: 1,
      pageSize: 20,
      totalItems: 0,
      totalPages: 0,
      hasNextPage: false,
    });
  });
});

describe("execd details", () => {
  it("converts modes written as octal digits", () => {
    expect(modeFromExecd(755)).toBe(0o755);
    expect(modeToExecd(0o100644)).toBe(644);
  });

  it("parses byte ranges", () => {
    expect(parseRange(undefined, 10)).toBeUndefined();
    expect(parseRange("bytes=2-4", 10)).toEqual({ start: 2, end: 4 });
    expect(parseRange("bytes=7-", 10)).toEqual({ start: 7, end: 9 });
    expect(parseRange("bytes=-3", 10)).toEqual({ start: 7, end: 9 });
    expect(parseRange("bytes=5-100", 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange("bytes=10-", 10)).toBe("unsatisfiable");
    expect(parseRange("items=1-2", 10)).toBeUndefined();
  });

  it("matches search globs by name, or by relative path when they have a slash", () => {
    expect(globMatcher("*.txt")("a/b/c.txt")).toBe(true);
    expect(globMatcher("*.txt")("a/b/c.py")).toBe(false);
    expect(globMatcher("src/*.ts")("src/a.ts")).toBe(true);
    expect(globMatcher("src/*.ts")("src/x/a.ts")).toBe(false);
    expect(globMatcher("src/**/*.ts")("src/x/y/a.ts")).toBe(true);
    expect(globMatcher("src/**/*.ts")("src/a.ts")).toBe(true);
    expect(globMatcher("**")("anything/at/all")).toBe(true);
    expect(globMatcher("a?c")("abc")).toBe(true);
  });

  it("counts complete log lines for the cursor", () => {
    expect(logLines("a\nb\npart", false)).toEqual({ lines: ["a\n", "b\n"], partial: "part" });
    expect(logLines("a\nb\nlast", true)).toEqual({ lines: ["a\n", "b\n", "last"], partial: "" });
  });
});

describe("errors", () => {
  it("answers OpenSandbox's codes, naming its fields", () => {
    const validation = new ApiError("validation_failed", "x", {
      fields: [{ field: "resources.memoryMb", rule: "too_big", message: "too big" }],
    });
    expect(lifecycleErrorReply(validation, true)).toEqual({
      status: 400,
      body: { code: "SANDBOX::INVALID_PARAMETER", message: "Invalid request: resourceLimits.memory: too big" },
    });
    expect(lifecycleErrorReply(new ApiError("unauthorized", "x"), false).body.code).toBe("MISSING_API_KEY");
    expect(lifecycleErrorReply(new ApiError("unauthorized", "x"), true).body.code).toBe("INVALID_API_KEY");
    expect(lifecycleErrorReply(new ApiError("sandbox_not_found", "gone"), true)).toEqual({
      status: 404,
      body: { code: "SANDBOX::SANDBOX_NOT_FOUND", message: "gone" },
    });
    expect(lifecycleErrorReply(new ApiError("not_implemented", "no"), true).body.code).toBe(
      "SANDBOX::API_NOT_SUPPORTED",
    );
  });
});
