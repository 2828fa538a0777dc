import {
  cidrSchema,
  commandArgSchema,
  domainPatternSchema,
  domainRuleSchema,
  envSchema,
  limits,
  portSchema,
  runtimePresets,
} from "@sandpit/contract";
import { z } from "zod";

/** Vercel sizes memory by vCPU: each one comes with this many MB. */
export const MEMORY_MB_PER_VCPU = 2048;
export const DEFAULT_VCPUS = 2;
export const DEFAULT_TIMEOUT_MS = 5 * 60 * 1000;
/** The seed's `POST /v1/sandboxes` exposes at most 4 ports; the named-sandbox API (v2, v3) 15. */
export const MAX_PORTS = { v1: 4, v2: 15 } as const;

const timeoutSchema = z.number().int().min(limits.timeoutMs.min).max(limits.timeoutMs.max);

/** `*` (every name) or a domain pattern, as Vercel's allow and deny lists take them. */
const domainListSchema = z.array(domainRuleSchema).max(256);
const cidrListSchema = z.array(cidrSchema).max(256);

/** Headers a request to `domain` gets on its way out (Vercel's legacy injection rule). */
const injectionRuleSchema = z.strictObject({
  domain: domainPatternSchema,
  headers: z.record(z.string(), z.string()).default({}),
});

/**
 * The seed's policy: a `mode` with allow and deny lists. `custom` and `default-deny` allow only what is
 * listed; `default-allow` allows everything that is not denied; denied entries win over allowed ones.
 */
export const modePolicySchema = z
  .strictObject({
    mode: z.enum(["allow-all", "deny-all", "custom", "default-allow", "default-deny"]),
    allowedDomains: domainListSchema.optional(),
    deniedDomains: domainListSchema.optional(),
    allowedCIDRs: cidrListSchema.optional(),
    deniedCIDRs: cidrListSchema.optional(),
    injectionRules: z.array(injectionRuleSchema).max(64).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.mode !== "allow-all" && p.mode !== "deny-all") return;
    for (const key of ["allowedDomains", "deniedDomains", "allowedCIDRs", "deniedCIDRs", "injectionRules"] as const) {
      if (p[key]?.length) {
        ctx.addIssue({ code: "custom", path: [key], message: `is not used with mode ${p.mode}` });
      }
    }
  });
export type VercelModePolicy = z.output<typeof modePolicySchema>;

/** One rule of the SDK's per-domain form: what happens to requests to that domain. */
const ruleSchema = z.strictObject({
  match: z.record(z.string(), z.unknown()).optional(),
  transform: z.array(z.strictObject({ headers: z.record(z.string(), z.string()).optional() })).optional(),
  forwardURL: z.string().optional(),
  response: z.record(z.string(), z.unknown()).optional(),
});
export type VercelPolicyRule = z.output<typeof ruleSchema>;

/**
 * The SDK's policy object (no `mode`): `allow` lists domains (or maps each to rules), `subnets` allows
 * and denies CIDRs. Anything not allowed is denied.
 */
export const rulesPolicySchema = z.strictObject({
  allow: z.union([domainListSchema, z.record(z.string(), z.array(ruleSchema))]).optional(),
  subnets: z.strictObject({ allow: cidrListSchema.optional(), deny: cidrListSchema.optional() }).optional(),
});
export type VercelRulesPolicy = z.output<typeof rulesPolicySchema>;

export type VercelNetworkPolicyInput = VercelModePolicy | VercelRulesPolicy;

/**
 * Either form: the seed's `{mode, ...}` or the SDK's `{allow, subnets}`, told apart by `mode` so that
 * errors name the fields of the form that was meant.
 */
export const networkPolicySchema = z.unknown().transform((value, ctx): VercelNetworkPolicyInput => {
  const withMode = typeof value === "object" && value !== null && "mode" in value;
  const result = (withMode ? modePolicySchema : rulesPolicySchema).safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) ctx.addIssue({ ...issue });
  return z.NEVER;
});

const sourceSchema = z.discriminatedUnion("type", [
  z
    .strictObject({
      type: z.literal("git"),
      url: z.string().min(1).max(4096),
      depth: z.number().int().min(1).optional(),
      revision: z.string().min(1).max(256).optional(),
      username: z.string().min(1).max(1024).optional(),
      password: z.string().min(1).max(16_384).optional(),
    })
    .refine((s) => (s.username === undefined) === (s.password === undefined), {
      path: ["password"],
      message: "username and password go together",
    }),
  z.strictObject({ type: z.literal("tarball"), url: z.string().min(1).max(4096) }),
  z.strictObject({ type: z.literal("snapshot"), snapshotId: z.string().min(1).max(128) }),
]);

const resourcesSchema = z
  .strictObject({
    vcpus: z
      .number()
      .int()
      .min(1)
      .max(limits.vcpus.max)
      .refine((n) => n === 1 || n % 2 === 0, "must be 1 or an even number")
      .default(DEFAULT_VCPUS),
    memory: z.number().int().optional(),
  })
  .superRefine((r, ctx) => {
    if (r.memory !== undefined && r.memory !== r.vcpus * MEMORY_MB_PER_VCPU) {
      ctx.addIssue({
        code: "custom",
        path: ["memory"],
        message: `must equal vcpus * ${MEMORY_MB_PER_VCPU} (${r.vcpus * MEMORY_MB_PER_VCPU})`,
      });
    }
  });

/** Names that are paths of the API under /v2/sandboxes. */
const RESERVED_NAMES = ["sessions", "snapshots", "drives"];

/** A sandbox name: the durable handle of the named-sandbox API. */
export const sandboxNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "must be 1-63 letters, digits, '.', '_' or '-'")
  .refine((n) => !RESERVED_NAMES.includes(n), "is reserved (a path of the API)");

const TAG_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

/** `POST /v1/sandboxes` (the seed), `/v2/sandboxes` and `/v3/sandboxes` (the SDK). */
export function createSandboxSchema(version: "v1" | "v2") {
  return z
    .strictObject({
      name: sandboxNameSchema.optional(),
      projectId: z.string().min(1).max(256).optional(),
      source: sourceSchema.optional(),
      networkPolicy: networkPolicySchema.optional(),
      env: envSchema.default({}),
      resources: resourcesSchema.optional(),
      ports: z
        .array(portSchema)
        .max(MAX_PORTS[version])
        .refine((p) => new Set(p).size === p.length, "must not repeat a port")
        .default([]),
      timeout: timeoutSchema.default(DEFAULT_TIMEOUT_MS),
      runtime: z.enum(runtimePresets).optional(),
      image: z.string().optional(),
      persistent: z.boolean().optional(),
      tags: z
        .record(z.string().regex(TAG_KEY, "must be 1-64 letters, digits, '.', '_' or '-'"), z.string().max(256))
        .refine((t) => Object.keys(t).length <= 5, "at most 5 tags")
        .default({}),
      region: z.string().optional(),
      failoverRegions: z.array(z.string()).optional(),
      mounts: z.record(z.string(), z.unknown()).optional(),
      networkId: z.string().optional(),
      snapshotExpiration: z.number().optional(),
      keepLastSnapshots: z.record(z.string(), z.unknown()).optional(),
      // Sent by Vercel's `sandbox` CLI for `run` and `create --connect`.
      __interactive: z.boolean().optional(),
    })
    .superRefine((body, ctx) => {
      if (body.source?.type === "snapshot" && body.runtime !== undefined) {
        ctx.addIssue({ code: "custom", path: ["runtime"], message: "cannot be combined with a snapshot source" });
      }
      if (version === "v1" && (body.name !== undefined || body.persistent !== undefined)) {
        const path = body.name !== undefined ? "name" : "persistent";
        ctx.addIssue({ code: "custom", path: [path], message: "is a field of the named-sandbox API (/v2, /v3)" });
      }
    });
}
export type VercelCreateSandbox = z.output<ReturnType<typeof createSandboxSchema>>;

/**
 * `POST /v2/sandboxes/{name}/fork`: the fork's own name and default timeout. The SDK's other fields
 * override settings the fork copies from its source; the route refuses them.
 */
export const forkSandboxSchema = z
  .object({ name: sandboxNameSchema.optional(), timeout: timeoutSchema.optional() })
  .catchall(z.unknown());

/** `POST …/cmd`. */
export const runCommandSchema = z.strictObject({
  command: commandArgSchema.min(1),
  args: z.array(commandArgSchema).max(4096).default([]),
  cwd: z.string().min(1).max(4096).optional(),
  env: envSchema.default({}),
  sudo: z.boolean().default(false),
  wait: z.boolean().default(false),
  logs: z.boolean().default(false),
  timeout: z.number().int().min(1).max(limits.execTimeoutMs.max).optional(),
});
export type VercelRunCommand = z.output<typeof runCommandSchema>;

/** `POST …/cmd/{id}/kill`: a POSIX signal number. */
export const killCommandSchema = z.strictObject({ signal: z.number().int().min(1).max(64).default(15) });

/** `POST …/fs/read` and `…/fs/mkdir`: a path, relative ones resolved against `cwd` (default the session's). */
export const pathRequestSchema = z.strictObject({
  path: z.string().min(1).max(4096),
  cwd: z.string().min(1).max(4096).optional(),
});

export const extendTimeoutSchema = z.strictObject({ duration: z.number().int().min(1).max(limits.timeoutMs.max) });

export const createSnapshotSchema = z.strictObject({ expiration: z.number().int().min(0).optional() });

/** `PATCH /v2/sandboxes/{name}`. */
export const updateSandboxSchema = z.strictObject({
  networkPolicy: networkPolicySchema.optional(),
  persistent: z.boolean().optional(),
  resources: z.record(z.string(), z.unknown()).optional(),
  timeout: z.number().optional(),
  networkId: z.string().optional(),
  tags: z.record(z.string(), z.string()).optional(),
  ports: z.array(z.number()).optional(),
  snapshotExpiration: z.number().optional(),
  keepLastSnapshots: z.record(z.string(), z.unknown()).optional(),
  currentSnapshotId: z.string().optional(),
  region: z.string().optional(),
  failoverRegions: z.array(z.string()).optional(),
  mounts: z.record(z.string(), z.unknown()).optional(),
});

/** The list endpoints' shared query: cursor pagination, newest first unless `sortOrder=asc`. */
export const listQuerySchema = z.object({
  project: z.string().optional(),
  projectId: z.string().optional(),
  name: z.string().optional(),
  namePrefix: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  cursor: z
    .string()
    .regex(/^\d{1,9}$/, "must be a cursor returned as pagination.next")
    .optional(),
  sortOrder: z.enum(["asc", "desc"]).default("desc"),
  sortBy: z.enum(["createdAt", "name"]).default("createdAt"),
  tags: z.union([z.string(), z.array(z.string())]).optional(),
});
export type VercelListQuery = z.output<typeof listQuerySchema>;
