import {
  type Command,
  type CreateSandboxRequest,
  type FieldIssue,
  runtimePresets,
  type SandboxStatus,
} from "@sandpit/contract";
import type { SandboxRecord, SnapshotRecord } from "../../domain/index.js";
import type { ApiError } from "../../errors.js";
import { toSandpitPolicy, toVercelPolicy, type VercelPolicyView } from "./network-policy.js";
import { DEFAULT_VCPUS, MEMORY_MB_PER_VCPU, type VercelCreateSandbox } from "./schemas.js";

/** Sandpit runs in one place; this is the region its sandboxes report and the only one create accepts. */
export const REGION = "sandpit";
/** Where Vercel sandboxes work: commands, relative paths and sources start here. */
export const SANDBOX_CWD = "/vercel/sandbox";
/** The runtime a sandbox gets when the request names none (the seed's default). */
export const DEFAULT_RUNTIME = "node24";

/** What a Vercel sandbox keeps in Sandpit's metadata (Sandpit sandboxes are the sessions). */
export const META = {
  name: "vercel.name",
  persistent: "vercel.persistent",
  projectId: "vercel.projectId",
  /** The sandbox's default timeout: what each session gets, whatever extensions the last one had. */
  timeout: "vercel.timeout",
  sourceSnapshotId: "vercel.sourceSnapshotId",
  tagPrefix: "vercel.tag.",
} as const;

export type VercelStatus = "pending" | "running" | "stopping" | "stopped" | "failed" | "aborted" | "snapshotting";

export interface VercelSession {
  id: string;
  memory: number;
  vcpus: number;
  region: string;
  runtime?: string;
  timeout: number;
  status: VercelStatus;
  requestedAt: number;
  startedAt?: number;
  stoppedAt?: number;
  duration?: number;
  sourceSnapshotId?: string;
  createdAt: number;
  cwd: string;
  updatedAt: number;
  networkPolicy: VercelPolicyView;
}

export interface VercelSandbox {
  name: string;
  persistent: boolean;
  region: string;
  vcpus: number;
  memory: number;
  runtime?: string;
  timeout: number;
  networkPolicy: VercelPolicyView;
  createdAt: number;
  updatedAt: number;
  expiresAt?: number;
  currentSessionId: string;
  currentSnapshotId?: string;
  status: VercelStatus;
  cwd: string;
  tags?: Record<string, string>;
}

export interface VercelRoute {
  port: number;
  /** The port's address on Sandpit (host-based when SANDPIT_DOMAIN is set, else path-based). */
  url: string;
  /** `{port}-{sessionId}`: the host label of the port when SANDPIT_DOMAIN is set. */
  subdomain: string;
}

export interface VercelCommand {
  id: string;
  name: string;
  args: string[];
  cwd: string;
  sessionId: string;
  exitCode: number | null;
  durationMs?: number;
  startedAt: number;
}

export interface VercelSnapshot {
  id: string;
  sourceSessionId: string;
  region: string;
  status: "created" | "deleted" | "failed";
  sizeBytes: number;
  createdAt: number;
  updatedAt: number;
}

export interface VercelErrorBody {
  error: { code: string; message: string; fields?: { field: string; rule: string; message: string }[] } & Record<
    string,
    unknown
  >;
}

/** A Vercel create request as Sandpit's native create request (validated by the contract after). */
export function createRequestFrom(body: VercelCreateSandbox, persistentByDefault: boolean): CreateSandboxRequest {
  const persistent = body.persistent ?? persistentByDefault;
  const source = body.source;
  const fromSnapshot = source?.type === "snapshot";
  const vcpus = body.resources?.vcpus ?? DEFAULT_VCPUS;
  const metadata: Record<string, string> = {
    [META.persistent]: String(persistent),
    [META.timeout]: String(body.timeout),
    ...(body.name !== undefined ? { [META.name]: body.name } : {}),
    ...(body.projectId !== undefined ? { [META.projectId]: body.projectId } : {}),
    ...(fromSnapshot ? { [META.sourceSnapshotId]: source.snapshotId } : {}),
  };
  for (const [k, v] of Object.entries(body.tags)) metadata[`${META.tagPrefix}${k}`] = v;
  return {
    ...(fromSnapshot
      ? { snapshotId: source.snapshotId }
      : {
          template: body.runtime ?? DEFAULT_RUNTIME,
          resources: { vcpus, memoryMb: vcpus * MEMORY_MB_PER_VCPU },
        }),
    ...(source?.type === "git"
      ? {
          source: {
            type: "git" as const,
            url: source.url,
            ...(source.revision !== undefined ? { ref: source.revision } : {}),
            ...(source.depth !== undefined ? { depth: source.depth } : {}),
            ...(source.username !== undefined ? { username: source.username, password: source.password } : {}),
          },
        }
      : {}),
    ...(source?.type === "tarball" ? { source: { type: "tarball" as const, url: source.url } } : {}),
    timeoutMs: body.timeout,
    // A persistent sandbox that times out is stopped with its state kept, as a stop would.
    timeoutAction: persistent ? "pause" : "destroy",
    env: body.env,
    metadata,
    cwd: SANDBOX_CWD,
    ...(body.networkPolicy ? { networkPolicy: toSandpitPolicy(body.networkPolicy) } : {}),
    ports: body.ports,
    // Vercel's port URLs are public: anyone with the URL reaches the port.
    publicPorts: true,
  };
}

/** Sandpit's statuses as a Vercel session's: paused (kept for a resume) and destroyed are both stopped. */
export function statusOf(status: SandboxStatus): VercelStatus {
  switch (status) {
    case "creating":
    case "resuming":
      return "pending";
    case "pausing":
    case "destroying":
      return "stopping";
    case "paused":
    case "destroyed":
      return "stopped";
    case "error":
      return "failed";
    default:
      return "running";
  }
}

/** The Vercel sandbox's name: the one it was created with, else its first session's id. */
export const nameOf = (r: SandboxRecord) => r.metadata[META.name] ?? r.id;
export const isPersistent = (r: SandboxRecord) => r.metadata[META.persistent] === "true";
/** The timeout each new session of the sandbox gets. */
export const defaultTimeoutOf = (r: SandboxRecord) => Number(r.metadata[META.timeout] ?? r.timeoutMs);
const runtimeOf = (r: SandboxRecord) =>
  (runtimePresets as readonly string[]).includes(r.template) ? r.template : undefined;

export function tagsOf(r: SandboxRecord): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.metadata)) {
    if (k.startsWith(META.tagPrefix)) tags[k.slice(META.tagPrefix.length)] = v;
  }
  return tags;
}

function updatedAtOf(r: SandboxRecord): number {
  return Math.max(r.createdAt, r.startedAt ?? 0, r.destroyedAt ?? 0);
}

/** A Sandpit sandbox as the Vercel session it runs. */
export function sessionOf(r: SandboxRecord): VercelSession {
  const status = statusOf(r.status);
  const running = r.status === "running" && r.startedAt !== null && r.expiresAt !== null;
  const sourceSnapshotId = r.metadata[META.sourceSnapshotId];
  const runtime = runtimeOf(r);
  return {
    id: r.id,
    memory: r.memoryMb,
    vcpus: r.vcpus,
    region: REGION,
    ...(runtime ? { runtime } : {}),
    // The SDK computes the deadline as startedAt + timeout: extensions show in the timeout.
    timeout: running ? r.expiresAt! - r.startedAt! : r.timeoutMs,
    status,
    requestedAt: r.createdAt,
    ...(r.startedAt !== null ? { startedAt: r.startedAt } : {}),
    ...(r.destroyedAt !== null ? { stoppedAt: r.destroyedAt } : {}),
    ...(r.destroyedAt !== null && r.startedAt !== null ? { duration: r.destroyedAt - r.startedAt } : {}),
    ...(sourceSnapshotId ? { sourceSnapshotId } : {}),
    createdAt: r.createdAt,
    cwd: r.cwd,
    updatedAt: updatedAtOf(r),
    networkPolicy: toVercelPolicy(r.networkPolicy),
  };
}

/** A Sandpit sandbox as the Vercel sandbox whose current session it is. */
export function sandboxOf(r: SandboxRecord): VercelSandbox {
  const runtime = runtimeOf(r);
  const tags = tagsOf(r);
  return {
    name: nameOf(r),
    persistent: isPersistent(r),
    region: REGION,
    vcpus: r.vcpus,
    memory: r.memoryMb,
    ...(runtime ? { runtime } : {}),
    timeout: defaultTimeoutOf(r),
    networkPolicy: toVercelPolicy(r.networkPolicy),
    createdAt: r.createdAt,
    updatedAt: updatedAtOf(r),
    ...(r.expiresAt !== null ? { expiresAt: r.expiresAt } : {}),
    currentSessionId: r.id,
    status: statusOf(r.status),
    cwd: r.cwd,
    ...(Object.keys(tags).length ? { tags } : {}),
  };
}

/** A Sandpit command as Vercel's: program name, its arguments, times in epoch milliseconds. */
export function commandOf(c: Command): VercelCommand {
  const startedAt = Date.parse(c.startedAt);
  const finishedAt = c.finishedAt ? Date.parse(c.finishedAt) : undefined;
  return {
    id: c.commandId,
    name: c.command[0] ?? "",
    args: c.command.slice(1),
    cwd: c.cwd,
    sessionId: c.sandboxId,
    exitCode: c.exitCode,
    ...(finishedAt !== undefined ? { durationMs: finishedAt - startedAt } : {}),
    startedAt,
  };
}

export function snapshotOf(s: SnapshotRecord, deleted = false): VercelSnapshot {
  return {
    id: s.id,
    sourceSessionId: s.sourceSandboxId,
    region: REGION,
    status: deleted ? "deleted" : s.status === "failed" ? "failed" : "created",
    sizeBytes: s.sizeBytes ?? 0,
    createdAt: s.createdAt,
    updatedAt: s.createdAt,
  };
}

/** Sandpit's request field names as the Vercel fields they came from. */
export function vercelField(field: string): string {
  const renames: [string, string][] = [
    ["resources.memoryMb", "resources.memory"],
    ["timeoutMs", "timeout"],
    ["template", "runtime"],
    ["snapshotId", "source.snapshotId"],
    ["source.ref", "source.revision"],
    ["networkPolicy.allow.domains", "networkPolicy.allowedDomains"],
    ["networkPolicy.allow.cidrs", "networkPolicy.allowedCIDRs"],
    ["networkPolicy.deny.domains", "networkPolicy.deniedDomains"],
    ["networkPolicy.deny.cidrs", "networkPolicy.deniedCIDRs"],
    ["networkPolicy.transforms", "networkPolicy.injectionRules"],
  ];
  for (const [from, to] of renames) {
    if (field === from || field.startsWith(`${from}.`)) return to + field.slice(from.length);
  }
  return field;
}

const CODES: Partial<Record<ApiError["code"], { status?: number; code: string }>> = {
  validation_failed: { code: "bad_request" },
  bad_request: { code: "bad_request" },
  source_failed: { status: 400, code: "bad_request" },
  unauthorized: { status: 403, code: "forbidden" },
  forbidden: { code: "forbidden" },
  not_found: { code: "not_found" },
  sandbox_not_found: { code: "not_found" },
  template_not_found: { code: "not_found" },
  command_not_found: { code: "not_found" },
  file_not_found: { code: "not_found" },
  method_not_allowed: { code: "method_unknown" },
  sandbox_failed: { code: "sandbox_failed" },
  not_implemented: { code: "not_supported" },
  internal: { code: "internal_server_error" },
  runtime_unavailable: { code: "service_unavailable" },
  no_capacity: { code: "service_unavailable" },
  node_fenced: { code: "service_unavailable" },
  database_unavailable: { code: "service_unavailable" },
};

/** Where a call landed on a session that cannot take it: Vercel's 410 and 422 let the SDK resume it. */
function stateError(status: unknown): { status: number; code: string } | undefined {
  if (status === "paused" || status === "destroyed") return { status: 410, code: "sandbox_stopped" };
  if (status === "pausing" || status === "destroying") return { status: 422, code: "sandbox_stopping" };
  return undefined;
}

/**
 * A Sandpit error in Vercel's shape `{error: {code, message}}`. Auth failures are 403 `forbidden`, as
 * Vercel's API answers them; validation errors name the Vercel field and the rule.
 */
export function errorReplyOf(error: ApiError, tokenGiven: boolean): { status: number; body: VercelErrorBody } {
  if (error.code === "unauthorized") {
    return tokenGiven
      ? { status: 403, body: { error: { code: "forbidden", message: "Not authorized", invalidToken: true } } }
      : {
          status: 403,
          body: {
            error: { code: "forbidden", message: "The request is missing an authentication token", missingToken: true },
          },
        };
  }
  const issues = (error.details?.fields as FieldIssue[] | undefined) ?? [];
  const fields = issues.map((f) => ({ field: vercelField(f.field), rule: f.rule, message: f.message }));
  const mapped = (error.code === "invalid_state" ? stateError(error.details?.status) : undefined) ?? CODES[error.code];
  const status = mapped?.status ?? error.status;
  const code = mapped?.code ?? error.code;
  const message = fields.length
    ? `Invalid request: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`
    : error.message;
  return { status, body: { error: { code, message, ...(fields.length ? { fields } : {}) } } };
}
