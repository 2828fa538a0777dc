import {
  type CreateSandboxRequest,
  type FieldIssue,
  type NetworkPolicy,
  type NetworkPolicyInput,
  redactPolicy,
  type SandboxStatus,
  sandboxStatuses,
} from "@sandpit/contract";
import type { ZodError } from "zod";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { memoryMbFor } from "../nullspace/mapping.js";
import type {
  Leap0CreateSandbox,
  Leap0ErrorBody,
  Leap0ListQuery,
  Leap0NetworkPolicy,
  Leap0Sandbox,
  Leap0State,
} from "./schemas.js";

/** Leap0 enforces this many sandboxes per organisation unless SANDPIT_LEAP0_MAX_SANDBOXES says otherwise. */
export const DEFAULT_LEAP0_MAX_SANDBOXES = 3;

/**
 * The Leap0 sandbox limit from `SANDPIT_LEAP0_MAX_SANDBOXES`: a non-negative integer, 0 for none (the
 * organisation's own Sandpit quota still applies). Throws at startup on anything else.
 */
export function leap0MaxSandboxes(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === "") return DEFAULT_LEAP0_MAX_SANDBOXES;
  if (!/^\d+$/.test(raw)) throw new Error(`SANDPIT_LEAP0_MAX_SANDBOXES must be a non-negative integer, got "${raw}"`);
  const max = Number(raw);
  return max === 0 ? undefined : max;
}

/** A Leap0 network policy as Sandpit's; transforms are Sandpit's credential brokering. */
export function networkPolicyFrom(policy: Leap0NetworkPolicy): NetworkPolicyInput {
  const transforms = policy.transforms?.map((t) => ({
    domain: t.domain,
    injectHeaders: t.inject_headers ?? {},
    stripHeaders: t.strip_headers ?? [],
  }));
  const withTransforms = transforms ? { transforms } : {};
  if (policy.mode !== "custom") return { mode: policy.mode, ...withTransforms };
  return {
    mode: "custom",
    ...withTransforms,
    allow: { domains: policy.allow_domains ?? [], cidrs: policy.allow_cidrs ?? [] },
  };
}

/** Sandpit's policy as Leap0's, injected header values redacted. */
export function networkPolicyOf(stored: NetworkPolicy): Leap0NetworkPolicy {
  const policy = redactPolicy(stored);
  const transforms = policy.transforms?.length
    ? {
        transforms: policy.transforms.map((t) => ({
          domain: t.domain,
          inject_headers: t.injectHeaders,
          strip_headers: t.stripHeaders,
        })),
      }
    : {};
  if (policy.mode !== "custom") return { mode: policy.mode, ...transforms };
  return {
    mode: "custom",
    allow_domains: policy.allow.domains,
    allow_cidrs: policy.allow.cidrs,
    ...transforms,
  };
}

/**
 * A Leap0 create request as Sandpit's. Memory is rounded up to Sandpit's 256 MiB steps (the response
 * shows what was assigned); `auto_pause` pauses at the timeout instead of destroying.
 */
export function createRequestFrom(body: Leap0CreateSandbox): CreateSandboxRequest {
  return {
    template: body.template_name,
    resources: { vcpus: body.vcpu, memoryMb: memoryMbFor(body.memory_mib) },
    timeoutMs: body.timeout_min * 60_000,
    timeoutAction: body.auto_pause ? "pause" : "destroy",
    env: body.env_vars ?? {},
    ...(body.network_policy ? { networkPolicy: networkPolicyFrom(body.network_policy) } : {}),
  };
}

/** Sandpit's statuses as Leap0's states. Leap0 has no failed state: a failed sandbox holds nothing, so it is `deleted`. */
export function stateOf(status: SandboxStatus): Leap0State {
  const states: Record<SandboxStatus, Leap0State> = {
    creating: "starting",
    running: "running",
    pausing: "snapshotting",
    paused: "paused",
    resuming: "unpausing",
    destroying: "deleting",
    destroyed: "deleted",
    error: "deleted",
  };
  return states[status];
}

/** The Sandpit statuses shown as one Leap0 state. */
export function statusesFor(state: Leap0State): SandboxStatus[] {
  return sandboxStatuses.filter((s) => stateOf(s) === state);
}

export function sandboxOf(record: SandboxRecord): Leap0Sandbox {
  return {
    id: record.id,
    template_id: record.template,
    vcpu: record.vcpus,
    memory_mib: record.memoryMb,
    disk_mib: record.diskMb,
    state: stateOf(record.status),
    auto_pause: record.timeoutAction === "pause",
    network_policy: networkPolicyOf(record.networkPolicy),
    created_at: new Date(record.createdAt).toISOString(),
  };
}

/** One page of sandboxes, sorted as asked (state sorts by name, then newest first). */
export function pageOf(records: SandboxRecord[], query: Leap0ListQuery) {
  const direction = query["order-by"] === "asc" ? 1 : -1;
  const sorted = [...records].sort((a, b) =>
    query.sort === "state"
      ? direction * stateOf(a.status).localeCompare(stateOf(b.status)) || b.createdAt - a.createdAt
      : direction * (a.createdAt - b.createdAt),
  );
  const start = (query.page - 1) * query["page-size"];
  return { items: sorted.slice(start, start + query["page-size"]).map(sandboxOf), total_items: records.length };
}

/** Sandpit's field names (native request paths) as the Leap0 fields they came from. */
export function leap0Field(field: string): string {
  const renames: [string, string][] = [
    ["resources.vcpus", "vcpu"],
    ["resources.memoryMb", "memory_mib"],
    ["timeoutMs", "timeout_min"],
    ["timeoutAction", "auto_pause"],
    ["template", "template_name"],
    ["env", "env_vars"],
    ["networkPolicy.allow.domains", "network_policy.allow_domains"],
    ["networkPolicy.allow.cidrs", "network_policy.allow_cidrs"],
    ["networkPolicy", "network_policy"],
  ];
  for (const [native, leap0] of renames) {
    if (field === native || field.startsWith(`${native}.`)) {
      return (leap0 + field.slice(native.length))
        .replace(".injectHeaders", ".inject_headers")
        .replace(".stripHeaders", ".strip_headers");
    }
  }
  return field;
}

/** Zod issues as field issues, one per unknown field (Leap0 names the field that failed). */
export function fieldIssuesOf(error: ZodError): FieldIssue[] {
  return error.issues.flatMap((issue): FieldIssue[] => {
    const at = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({
        field: at ? `${at}.${key}` : key,
        rule: issue.code,
        message: "is not a known field",
      }));
    }
    return [{ field: at || "body", rule: issue.code, message: issue.message }];
  });
}

/** A validation error whose fields are Leap0's. */
export function leap0ValidationError(error: ZodError): ApiError {
  const fields = fieldIssuesOf(error);
  return new ApiError(
    "validation_failed",
    `Invalid request: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`,
    {
      fields,
    },
  );
}

/**
 * A Sandpit error in Leap0's shape: `{message, errors:[{field, error}]}` for a 400, `{message}` for the
 * rest; the sandbox limit is a 409 saying so.
 */
export function errorReplyOf(error: ApiError): { status: number; body: Leap0ErrorBody } {
  if (error.status === 400) {
    const fields = (error.details?.fields as FieldIssue[] | undefined) ?? [];
    const errors = fields.length
      ? fields.map((f) => ({ field: leap0Field(f.field), error: f.message }))
      : [{ field: "body", error: error.message }];
    return { status: 400, body: { message: "Invalid request", errors } };
  }
  if (error.code === "quota_exceeded" && error.details?.limit === "maxSandboxes") {
    const { max, current } = error.details as { max: number; current: number };
    return {
      status: 409,
      body: { message: `Sandbox limit reached: at most ${max} sandboxes per organization (${current} in use)` },
    };
  }
  return { status: error.status, body: { message: error.message } };
}
