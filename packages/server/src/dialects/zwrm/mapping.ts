import {
  type CreateSandboxRequest,
  type FieldIssue,
  type NetworkPolicy,
  type SandboxStatus,
  sandboxStatuses,
} from "@sandpit/contract";
import type { SandboxRecord } from "../../domain/index.js";
import type { ApiError } from "../../errors.js";
import type { ZwrmCreateSandbox, ZwrmEgress, ZwrmErrorBody, ZwrmSandbox, ZwrmStatus } from "./schemas.js";

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/** ZWRM's documented bounds and defaults. */
export const ZWRM_LIMITS = {
  sandboxTimeoutMs: { default: 5 * MINUTE, max: 24 * HOUR },
  idleTimeoutMs: { default: 10 * MINUTE, max: 24 * HOUR },
  execTimeoutMs: { default: 30 * SECOND, max: 5 * MINUTE },
  uploadBytes: 100 * 1024 * 1024,
} as const;

/**
 * ZWRM's VM presets as Sandpit resources. ZWRM documents the names (default `shared-cpu-1x`) but not
 * their sizes; these are Sandpit's: n vCPUs with 1 GiB each.
 */
export const SIZES = {
  "shared-cpu-1x": { vcpus: 1, memoryMb: 1024 },
  "shared-cpu-2x": { vcpus: 2, memoryMb: 2048 },
  "shared-cpu-4x": { vcpus: 4, memoryMb: 4096 },
  "shared-cpu-8x": { vcpus: 8, memoryMb: 8192 },
} as const;
export type ZwrmSize = keyof typeof SIZES;
export const SIZE_NAMES = Object.keys(SIZES) as [ZwrmSize, ...ZwrmSize[]];

/** The metadata service range: ZWRM refuses policies that deny it. */
const METADATA_RANGE = "169.254.0.0/16";

const UNIT_MS: Record<string, number> = { ms: 1, s: SECOND, m: MINUTE, h: HOUR };

/**
 * A duration as ZWRM writes them (Go syntax: `30s`, `5m`, `1h`, `1h30m`, `1.5h`, `500ms`) in
 * milliseconds; undefined when it is not one.
 */
export function parseDuration(raw: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(raw)) return undefined;
  let total = 0;
  for (const part of raw.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(part[1]) * UNIT_MS[part[2]!]!;
  }
  return Math.round(total);
}

/** Whole seconds of a duration, for responses. */
export const seconds = (ms: number) => Math.round(ms / SECOND);

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

/** First and last address of an IPv4 CIDR (a bare address is a /32). */
function cidrRange(cidr: string): [number, number] {
  const [ip, bits = "32"] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipv4ToInt(ip!) / size) * size;
  return [start, start + size - 1];
}

/** Whether two IPv4 CIDRs share any address. */
export function cidrsOverlap(a: string, b: string): boolean {
  const [aStart, aEnd] = cidrRange(a);
  const [bStart, bEnd] = cidrRange(b);
  return aStart <= bEnd && bStart <= aEnd;
}

/** ZWRM's egress rules beyond the fields' own shapes; each problem names its field. */
export function egressProblems(egress: ZwrmEgress): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const lists = ["allow_cidrs", "deny_cidrs", "allow_ports"] as const;
  if (egress.mode === "allow_all") {
    for (const list of lists) {
      if (egress[list] !== undefined) problems.push({ path: [list], message: "is not allowed with mode allow_all" });
    }
  }
  if (egress.allow_ports?.length && !egress.allow_cidrs?.length) {
    problems.push({ path: ["allow_ports"], message: "requires allow_cidrs" });
  }
  egress.deny_cidrs?.forEach((cidr, i) => {
    if (cidrsOverlap(cidr, METADATA_RANGE)) {
      problems.push({
        path: ["deny_cidrs", i],
        message: `must not cover the metadata service range ${METADATA_RANGE}`,
      });
    }
  });
  return problems;
}

/** A ZWRM egress policy as Sandpit's: deny_all with lists is a custom policy (deny is evaluated first). */
export function networkPolicyFrom(egress: ZwrmEgress): NetworkPolicy {
  if (egress.mode === "allow_all") return { mode: "allow-all" };
  if (!egress.allow_cidrs?.length && !egress.deny_cidrs?.length) return { mode: "deny-all" };
  return {
    mode: "custom",
    allow: { domains: [], cidrs: egress.allow_cidrs ?? [], ports: egress.allow_ports ?? [] },
    deny: { domains: [], cidrs: egress.deny_cidrs ?? [] },
  };
}

/** Sandpit's policy as ZWRM's egress object (ZWRM has no domain rules: only CIDRs and ports show). */
export function egressOf(policy: NetworkPolicy): ZwrmEgress {
  if (policy.mode === "allow-all") return { mode: "allow_all" };
  if (policy.mode === "deny-all") return { mode: "deny_all" };
  return {
    mode: "deny_all",
    ...(policy.allow.cidrs.length ? { allow_cidrs: policy.allow.cidrs } : {}),
    ...(policy.deny.cidrs.length ? { deny_cidrs: policy.deny.cidrs } : {}),
    ...(policy.allow.ports.length ? { allow_ports: policy.allow.ports } : {}),
  };
}

/**
 * A ZWRM create request as Sandpit's: ephemeral sandboxes are destroyed at their timeout; persistent
 * ones never expire, pause after their idle timeout and wake on the next call (autoResume).
 */
export function createRequestFrom(body: ZwrmCreateSandbox): CreateSandboxRequest {
  const persistent = body.mode === "persistent";
  return {
    template: body.template,
    resources: { ...SIZES[body.size] },
    lifecycle: body.mode,
    timeoutAction: "destroy",
    ...(persistent
      ? { idleTimeoutMs: body.idle_timeout ?? ZWRM_LIMITS.idleTimeoutMs.default, autoResume: true }
      : { timeoutMs: body.timeout ?? ZWRM_LIMITS.sandboxTimeoutMs.default }),
    env: body.env,
    metadata: body.metadata,
    ...(body.egress ? { networkPolicy: networkPolicyFrom(body.egress) } : {}),
  };
}

/** Sandpit's statuses folded into ZWRM's four; transitions show where they are heading. */
export function statusOf(status: SandboxStatus): ZwrmStatus {
  switch (status) {
    case "creating":
      return "creating";
    case "running":
    case "resuming":
      return "running";
    case "pausing":
    case "paused":
      return "suspended";
    default:
      // destroying, destroyed, and error: a sandbox that failed holds nothing any more.
      return "destroyed";
  }
}

/** The Sandpit statuses behind one ZWRM status, for the list filter. */
export function statusesFor(status: ZwrmStatus): SandboxStatus[] {
  return sandboxStatuses.filter((s) => statusOf(s) === status);
}

/** The preset name of a sandbox's resources; null for sizes no preset has (sandboxes made elsewhere). */
export function sizeOf(record: Pick<SandboxRecord, "vcpus" | "memoryMb">): ZwrmSize | null {
  return SIZE_NAMES.find((n) => SIZES[n].vcpus === record.vcpus && SIZES[n].memoryMb === record.memoryMb) ?? null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A Sandpit sandbox as ZWRM's sandbox. */
export function sandboxOf(record: SandboxRecord): ZwrmSandbox {
  const persistent = record.lifecycle === "persistent";
  return {
    id: record.id,
    template: record.template,
    mode: record.lifecycle,
    status: statusOf(record.status),
    size: sizeOf(record),
    vcpus: record.vcpus,
    memory_mb: record.memoryMb,
    timeout_seconds: persistent ? null : seconds(record.timeoutMs),
    idle_timeout_seconds: persistent && record.idleTimeoutMs !== null ? seconds(record.idleTimeoutMs) : null,
    expires_at: iso(record.expiresAt),
    metadata: record.metadata,
    egress: egressOf(record.networkPolicy),
    created_at: iso(record.createdAt)!,
    started_at: iso(record.startedAt),
    destroyed_at: iso(record.destroyedAt),
  };
}

/**
 * A path ZWRM accepts for upload and download: absolute, never the root, no `..` segment. Returns the
 * path with repeated slashes and `.` segments removed, or the rule it broke.
 */
export function checkFilePath(raw: string | undefined): { path: string } | { error: string } {
  if (raw === undefined || raw === "") return { error: "is required" };
  if (!raw.startsWith("/")) return { error: "must be an absolute path" };
  if (raw.includes("\0")) return { error: "must not contain NUL" };
  const segments = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) return { error: "must not contain '..'" };
  if (segments.length === 0) return { error: "must not be the root directory" };
  return { path: `/${segments.join("/")}` };
}

/** Sandpit's field names (native request paths) as the ZWRM fields they came from. */
export function zwrmField(field: string): string {
  const exact: Record<string, string> = {
    "resources.vcpus": "size",
    "resources.memoryMb": "size",
    timeoutMs: "timeout",
    idleTimeoutMs: "idle_timeout",
    lifecycle: "mode",
    networkPolicy: "egress",
    cwd: "workdir",
  };
  if (exact[field]) return exact[field];
  if (field.startsWith("networkPolicy.allow.cidrs")) return `egress.allow_cidrs${field.slice(25)}`;
  if (field.startsWith("networkPolicy.deny.cidrs")) return `egress.deny_cidrs${field.slice(24)}`;
  if (field.startsWith("networkPolicy.allow.ports")) return `egress.allow_ports${field.slice(25)}`;
  return field;
}

const CODES: Partial<Record<ApiError["code"], string>> = {
  validation_failed: "invalid_request",
  bad_request: "invalid_request",
  payload_too_large: "invalid_request",
  sandbox_not_found: "not_found",
  template_not_found: "not_found",
  file_not_found: "not_found",
  invalid_state: "conflict",
  sandbox_failed: "conflict",
  not_implemented: "not_supported",
  internal: "internal_error",
  runtime_unavailable: "unavailable",
  no_capacity: "unavailable",
  node_fenced: "unavailable",
  database_unavailable: "unavailable",
};

/**
 * A Sandpit error in ZWRM's shape `{error, code, fields?}`. ZWRM answers 400 for everything wrong with a
 * request, an upload over the size limit included.
 */
export function errorReplyOf(error: ApiError): { status: number; body: ZwrmErrorBody } {
  const issues = (error.details?.fields as FieldIssue[] | undefined) ?? [];
  const fields = issues.map((f) => ({ field: zwrmField(f.field), message: f.message }));
  const status = error.code === "payload_too_large" ? 400 : error.status;
  const message = fields.length
    ? `invalid request: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`
    : error.message;
  return {
    status,
    body: { error: message, code: CODES[error.code] ?? error.code, ...(fields.length ? { fields } : {}) },
  };
}
