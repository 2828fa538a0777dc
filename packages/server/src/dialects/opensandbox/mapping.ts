import {
  type CreateSandboxRequest,
  type FieldIssue,
  limits,
  type NetworkPolicy,
  type NetworkPolicyInput,
  type SandboxStatus,
  volumeLimits,
  type volumeMountSchema,
} from "@sandpit/contract";
import type { z } from "zod";
import type { SandboxRecord, SnapshotRecord } from "../../domain/index.js";
import {
  type NetworkRule,
  type OpenSandboxCreateSandbox,
  type OpenSandboxNetworkPolicy,
  type OpenSandboxVolume,
  RESERVED_METADATA_PREFIX,
} from "./schemas.js";

/** The ports OpenSandbox's SDKs ask endpoints for: the in-sandbox execd API and the egress sidecar. */
export const EXECD_PORT = 44772;
export const EGRESS_PORT = 18080;
/** What OpenSandbox's SDKs send when the user names no entrypoint: a process that keeps the sandbox up. */
export const DEFAULT_ENTRYPOINT = ["tail", "-f", "/dev/null"];
/** Metadata key keeping the image URI the client asked for (the template it mapped to is Sandpit's). */
export const IMAGE_METADATA_KEY = `${RESERVED_METADATA_PREFIX}image`;

const MIB = 1024 * 1024;
const MEMORY_STEP_MB = 256;

// ---- images ----

/**
 * Docker Hub images that Sandpit's built-in templates stand in for: the same runtime version on the same
 * Debian release (13, trixie), already built, so no pull is needed. `ubuntu` (untagged or latest) runs
 * on the Debian base. Anything else (other versions, bookworm variants) is pulled as an image.
 */
const TEMPLATE_ALIASES: [RegExp, string][] = [
  [/^python:3\.13(\.\d+)?(-(slim|trixie)){0,2}$/, "python3.13"],
  [/^node:24(\.\d+){0,2}(-(slim|trixie)){0,2}$/, "node24"],
  [/^node:22(\.\d+){0,2}(-(slim|trixie)){0,2}$/, "node22"],
  [/^debian(:(latest|stable|trixie|13)(-slim)?)?$/, "base"],
  [/^ubuntu(:latest)?$/, "base"],
];

/** `docker.io/library/python:3.13` → `python:3.13`. */
function shortImageName(uri: string): string {
  return uri.replace(/^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//, "").replace(/^library\//, "");
}

/** The built-in template an image URI stands for, when it is one of the known aliases. */
export function templateAliasOf(uri: string): string | undefined {
  const name = shortImageName(uri);
  return TEMPLATE_ALIASES.find(([pattern]) => pattern.test(name))?.[1];
}

/** A bare name (no registry, tag or digest) could be one of Sandpit's templates. */
export function couldBeTemplateName(uri: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,62}$/.test(uri);
}

// ---- resources ----

const BINARY_UNITS: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL_UNITS: Record<string, number> = { "": 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A Kubernetes CPU quantity (`"500m"`, `"2"`, `"1.5"`) in cores. */
export function parseCpu(value: string): number | undefined {
  const m = /^(\d+(\.\d+)?)(m?)$/.exec(value.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[3] === "m" ? n / 1000 : n;
}

/** A Kubernetes byte quantity (`"512Mi"`, `"1Gi"`, `"2G"`, `"1073741824"`) in bytes. */
export function parseBytes(value: string): number | undefined {
  const m = /^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$/.exec(value.trim());
  if (!m) return undefined;
  const unit = m[3] ?? "";
  const factor = BINARY_UNITS[unit] ?? DECIMAL_UNITS[unit];
  return factor === undefined ? undefined : Number(m[1]) * factor;
}

export interface ResourcesFromLimits {
  resources: { vcpus?: number; memoryMb?: number; diskMb?: number };
  issues: FieldIssue[];
}

/**
 * `resourceLimits` as Sandpit resources: CPU rounded up to whole vCPUs, memory up to Sandpit's 256 MiB
 * steps, `ephemeral-storage` as the disk. GPUs and unknown resources are refused by name.
 */
export function resourcesFrom(limits: Record<string, string> | undefined): ResourcesFromLimits {
  const resources: ResourcesFromLimits["resources"] = {};
  const issues: FieldIssue[] = [];
  const issue = (key: string, rule: string, message: string) =>
    issues.push({ field: `resourceLimits.${key}`, rule, message });
  for (const [key, value] of Object.entries(limits ?? {})) {
    if (key === "cpu") {
      const cores = parseCpu(value);
      if (cores === undefined || cores <= 0)
        issue(key, "invalid_format", 'must be a CPU quantity such as "500m" or "2"');
      else resources.vcpus = Math.ceil(cores);
    } else if (key === "memory" || key === "ephemeral-storage") {
      const bytes = parseBytes(value);
      if (bytes === undefined || bytes <= 0) {
        issue(key, "invalid_format", 'must be a byte quantity such as "512Mi" or "1Gi"');
      } else if (key === "memory") {
        resources.memoryMb = Math.max(MEMORY_STEP_MB, Math.ceil(bytes / MIB / MEMORY_STEP_MB) * MEMORY_STEP_MB);
      } else {
        resources.diskMb = Math.ceil(bytes / MIB);
      }
    } else if (key === "gpu" || key.endsWith("/gpu")) {
      if (Number(value) !== 0) issue(key, "unsupported", "GPUs are not available in Sandpit sandboxes");
    } else {
      issue(key, "unsupported", "unknown resource: Sandpit sizes cpu, memory and ephemeral-storage");
    }
  }
  return { resources, issues };
}

// ---- network policy ----

const IPV4_OR_CIDR = /^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/;
const MATCH_EVERYTHING = "0.0.0.0/0";

/** Rules in order, each target counted once: OpenSandbox lets the first rule for a target decide. */
function firstRulePerTarget(rules: NetworkRule[]): NetworkRule[] {
  const seen = new Set<string>();
  return rules.filter((r) => {
    const key = r.target.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function targets(rules: NetworkRule[], action: NetworkRule["action"]) {
  const picked = rules.filter((r) => r.action === action).map((r) => r.target);
  return {
    domains: picked.filter((t) => !IPV4_OR_CIDR.test(t)),
    cidrs: picked.filter((t) => IPV4_OR_CIDR.test(t)).map((t) => (t.includes("/") ? t : `${t}/32`)),
  };
}

/**
 * An OpenSandbox egress policy as Sandpit's. No policy (or an empty one) allows everything; a policy
 * without `defaultAction` denies by default, as the sidecar does. Sandpit checks denies before allows,
 * which is OpenSandbox's first-match order whenever a target appears in one rule only.
 */
export function networkPolicyFrom(policy: OpenSandboxNetworkPolicy | null | undefined): NetworkPolicyInput | undefined {
  if (!policy || (policy.defaultAction === undefined && !policy.egress?.length)) return undefined;
  const rules = firstRulePerTarget(policy.egress ?? []);
  const allow = targets(rules, "allow");
  const deny = targets(rules, "deny");
  const hasAllows = allow.domains.length + allow.cidrs.length > 0;
  const hasDenies = deny.domains.length + deny.cidrs.length > 0;
  if ((policy.defaultAction ?? "deny") === "deny") {
    if (!hasAllows) return { mode: "deny-all" };
    return { mode: "custom", allow, deny };
  }
  if (!hasDenies) return { mode: "allow-all" };
  return { mode: "custom", allow: { domains: [], cidrs: [MATCH_EVERYTHING] }, deny };
}

/** A Sandpit policy as OpenSandbox's `{defaultAction, egress}` (denies listed first, as Sandpit applies them). */
export function networkPolicyOf(policy: NetworkPolicy): Required<OpenSandboxNetworkPolicy> {
  if (policy.mode === "allow-all") return { defaultAction: "allow", egress: [] };
  if (policy.mode === "deny-all") return { defaultAction: "deny", egress: [] };
  const rule = (action: NetworkRule["action"]) => (target: string) => ({ action, target });
  const denies = [...policy.deny.domains, ...policy.deny.cidrs].map(rule("deny"));
  if (policy.allow.cidrs.includes(MATCH_EVERYTHING)) return { defaultAction: "allow", egress: denies };
  const allows = [...policy.allow.domains, ...policy.allow.cidrs].map(rule("allow"));
  return { defaultAction: "deny", egress: [...denies, ...allows] };
}

/**
 * The sidecar's `PATCH /policy`: incoming rules first (the first per target wins), then the current
 * rules for other targets; the default action stays.
 */
export function mergeRules(current: Required<OpenSandboxNetworkPolicy>, incoming: NetworkRule[]) {
  const patched = firstRulePerTarget(incoming);
  const patchedTargets = new Set(patched.map((r) => r.target.toLowerCase()));
  return {
    defaultAction: current.defaultAction,
    egress: [...patched, ...current.egress.filter((r) => !patchedTargets.has(r.target.toLowerCase()))],
  };
}

/** The sidecar's derived mode name: what happens to traffic no rule names. */
export function egressModeOf(policy: Required<OpenSandboxNetworkPolicy>): string {
  return policy.defaultAction === "allow" ? "allow_all" : "deny_all";
}

// ---- volumes ----

type VolumeMountInput = z.input<typeof volumeMountSchema>;

export interface VolumesFrom {
  mounts: VolumeMountInput[];
  /** Named volumes to make first (`pvc.createIfNotExists`, the default), with their size. */
  wanted: { name: string; sizeMb: number }[];
  issues: FieldIssue[];
  /** A backend or option Sandpit does not have, by field. */
  unsupported?: { field: string; message: string };
}

/**
 * OpenSandbox volumes as Sandpit mounts: `pvc.claimName` names a volume of the organisation (made when
 * missing, sized by `pvc.storage`), `host.path` a host directory an admin allows (`subPath` joined to
 * it). OSSFS is not available; Kubernetes-only hints (storageClass, accessModes) do not apply.
 */
export function volumesFrom(volumes: OpenSandboxVolume[] | undefined): VolumesFrom {
  const out: VolumesFrom = { mounts: [], wanted: [], issues: [] };
  const names = new Set<string>();
  (volumes ?? []).forEach((v, i) => {
    const field = `volumes.${i}`;
    if (names.has(v.name)) out.issues.push({ field: `${field}.name`, rule: "duplicate", message: "must be unique" });
    names.add(v.name);
    const backends = [v.host, v.pvc, v.ossfs].filter((b) => b !== undefined).length;
    if (backends !== 1) {
      out.issues.push({ field, rule: "invalid", message: "exactly one of host, pvc and ossfs is required" });
      return;
    }
    const common = { mountPath: v.mountPath, readOnly: v.readOnly ?? false };
    if (v.ossfs) {
      out.unsupported ??= { field: `${field}.ossfs`, message: "OSSFS volumes are not supported: use pvc or host" };
    } else if (v.host) {
      out.mounts.push({
        ...common,
        hostPath: v.subPath ? `${v.host.path.replace(/\/+$/, "")}/${v.subPath}` : v.host.path,
      });
    } else if (v.pvc) {
      const pvc = v.pvc as {
        claimName: string;
        createIfNotExists?: unknown;
        deleteOnSandboxTermination?: unknown;
        storage?: unknown;
      };
      out.mounts.push({ ...common, name: pvc.claimName, ...(v.subPath ? { subPath: v.subPath } : {}) });
      if (pvc.deleteOnSandboxTermination === true) {
        out.unsupported ??= {
          field: `${field}.pvc.deleteOnSandboxTermination`,
          message: "volumes outlive their sandboxes in Sandpit: delete them with DELETE /v1/volumes/{name}",
        };
      }
      if (pvc.createIfNotExists !== false) {
        const bytes = typeof pvc.storage === "string" ? parseBytes(pvc.storage) : undefined;
        if (pvc.storage !== undefined && pvc.storage !== null && bytes === undefined) {
          out.issues.push({
            field: `${field}.pvc.storage`,
            rule: "invalid_format",
            message: 'must be a size such as "1Gi"',
          });
        }
        out.wanted.push({
          name: pvc.claimName,
          sizeMb: bytes === undefined ? volumeLimits.sizeMb.default : Math.ceil(bytes / MIB),
        });
      }
    }
  });
  return out;
}

// ---- sandboxes ----

export type OpenSandboxState =
  | "Pending"
  | "Running"
  | "Pausing"
  | "Paused"
  | "Resuming"
  | "Stopping"
  | "Terminated"
  | "Failed";

const STATES: Record<SandboxStatus, OpenSandboxState> = {
  creating: "Pending",
  running: "Running",
  pausing: "Pausing",
  paused: "Paused",
  resuming: "Resuming",
  destroying: "Stopping",
  destroyed: "Terminated",
  error: "Failed",
};

/** Sandpit's statuses under OpenSandbox's state names. */
export function stateOf(status: SandboxStatus): OpenSandboxState {
  return STATES[status];
}

/** The Sandpit statuses behind OpenSandbox state names (matched case-insensitively; unknown names match nothing). */
export function statusesFor(states: string[]): SandboxStatus[] {
  const wanted = new Set(states.flatMap((s) => s.split(",")).map((s) => s.trim().toLowerCase()));
  return (Object.keys(STATES) as SandboxStatus[]).filter((s) => wanted.has(STATES[s].toLowerCase()));
}

/** Why a sandbox ended, in OpenSandbox's reason vocabulary. */
function endReason(reason: string | null): string {
  if (reason === "expired") return "ttl_expiry";
  return reason ?? "user_delete";
}

const iso = (ms: number) => new Date(ms).toISOString();

/** `status` of a sandbox: state, a machine-readable reason, a message and when it was entered (when known). */
export function statusOf(record: SandboxRecord) {
  const state = stateOf(record.status);
  const at = (ms: number | null) => (ms === null ? {} : { lastTransitionAt: iso(ms) });
  switch (record.status) {
    case "creating":
      return { state, reason: "provisioning", message: "Sandbox is being provisioned", ...at(record.createdAt) };
    case "running":
      return { state, reason: "ready", message: "Sandbox is running", ...at(record.startedAt) };
    case "pausing":
      return { state, reason: "pause_requested", message: "Sandbox memory and processes are being saved" };
    case "paused":
      return { state, reason: "paused", message: "Sandbox is paused; its memory, processes and files are kept" };
    case "resuming":
      return { state, reason: "resume_requested", message: "Sandbox is being restored" };
    case "destroying":
      return { state, reason: endReason(record.reason), message: "Sandbox is being terminated" };
    case "destroyed":
      return { state, reason: endReason(record.reason), message: "Sandbox was terminated", ...at(record.destroyedAt) };
    case "error":
      return {
        state,
        reason: record.reason ?? "runtime_error",
        message: `Sandbox failed${record.reason ? `: ${record.reason}` : ""}`,
      };
  }
}

/** Metadata as the client set it: Sandpit's own notes under `opensandbox.io/` are not shown. */
export function userMetadata(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).filter(([k]) => !k.startsWith(RESERVED_METADATA_PREFIX)));
}

/** The image a sandbox was asked for: the client's URI, else Sandpit's template or image. */
export function imageOf(record: SandboxRecord): { uri: string } {
  const asked = record.metadata[IMAGE_METADATA_KEY];
  if (asked) return { uri: asked };
  return { uri: record.template.startsWith("image:") ? record.template.slice("image:".length) : record.template };
}

/** `expiresAt` is left out while the sandbox cannot expire (paused, or already ended). */
function expiry(record: SandboxRecord) {
  return record.expiresAt === null ? {} : { expiresAt: iso(record.expiresAt) };
}

/** The create response: no startup source (OpenSandbox leaves it to GET). */
export function createdSandboxOf(record: SandboxRecord, entrypoint: string[]) {
  return {
    id: record.id,
    status: statusOf(record),
    metadata: userMetadata(record.metadata),
    entrypoint,
    ...expiry(record),
    createdAt: iso(record.createdAt),
  };
}

/** The full `Sandbox`: startup source (image or snapshot) included. */
export function sandboxOf(record: SandboxRecord, entrypoint: string[]) {
  const snapshotId = record.metadata[SNAPSHOT_METADATA_KEY];
  return {
    id: record.id,
    ...(snapshotId ? { snapshotId } : { image: imageOf(record) }),
    status: statusOf(record),
    metadata: userMetadata(record.metadata),
    entrypoint,
    ...expiry(record),
    createdAt: iso(record.createdAt),
  };
}

const SNAPSHOT_STATES: Record<SnapshotRecord["status"], string> = {
  creating: "Creating",
  ready: "Ready",
  failed: "Failed",
};

export function snapshotOf(s: SnapshotRecord) {
  return {
    id: s.id,
    sandboxId: s.sourceSandboxId,
    ...(s.name ? { name: s.name } : {}),
    status: {
      state: SNAPSHOT_STATES[s.status],
      reason: `snapshot_${s.status === "creating" ? "accepted" : s.status}`,
    },
    createdAt: iso(s.createdAt),
  };
}

/** The `metadata` list filter: `k=v&k2=v2`, keys and values URL-encoded once more inside the parameter. */
export function parseMetadataFilter(query: string | undefined): Record<string, string> {
  if (!query) return {};
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) out[decode(k)] = decode(v);
  return out;
}

/** One page of a list, with OpenSandbox's pagination block. */
export function pageOf<T>(items: T[], page: number, pageSize: number) {
  const totalPages = Math.ceil(items.length / pageSize);
  return {
    items: items.slice((page - 1) * pageSize, page * pageSize),
    pagination: { page, pageSize, totalItems: items.length, totalPages, hasNextPage: page < totalPages },
  };
}

/** Metadata key keeping the snapshot a sandbox was restored from. */
export const SNAPSHOT_METADATA_KEY = `${RESERVED_METADATA_PREFIX}snapshot-id`;

/** Where a new sandbox comes from, once the image URI is resolved to a template or an image. */
export type Startup =
  | { template: string; imageUri: string }
  | { image: { uri: string; auth?: { username: string; password: string } } }
  | { snapshotId: string };

/**
 * A timeout as Sandpit's lifecycle. Without one (null or omitted) the sandbox does not expire: Sandpit's
 * persistent lifecycle, which holds the organisation's quotas like any sandbox and only pauses after the
 * longest idle time Sandpit allows, to be resumed by the next call.
 */
export function lifetimeOf(timeoutSeconds: number | null): Partial<CreateSandboxRequest> {
  if (timeoutSeconds === null) {
    return { lifecycle: "persistent", idleTimeoutMs: limits.timeoutMs.max, autoResume: true };
  }
  return { timeoutMs: timeoutSeconds * 1000 };
}

/**
 * An OpenSandbox create request as Sandpit's native one (validated by the contract after). Every port
 * is reachable through the endpoints call, which hands out the sandbox's traffic token.
 */
export function createRequestFrom(
  body: OpenSandboxCreateSandbox,
  startup: Startup,
  resources: ResourcesFromLimits["resources"],
  timeoutSeconds: number | null,
  mounts: VolumeMountInput[],
): CreateSandboxRequest {
  const metadata = { ...(body.metadata ?? {}) };
  if ("imageUri" in startup) metadata[IMAGE_METADATA_KEY] = startup.imageUri;
  if ("snapshotId" in startup) metadata[SNAPSHOT_METADATA_KEY] = startup.snapshotId;
  // The SDKs send their keep-alive default even for snapshots, whose processes simply continue.
  const entrypoint =
    "snapshotId" in startup && JSON.stringify(body.entrypoint) === JSON.stringify(DEFAULT_ENTRYPOINT)
      ? undefined
      : body.entrypoint;
  const policy = networkPolicyFrom(body.networkPolicy);
  return {
    ...("template" in startup ? { template: startup.template } : {}),
    ...("image" in startup ? { image: startup.image } : {}),
    ...("snapshotId" in startup ? { snapshotId: startup.snapshotId } : {}),
    ...(entrypoint ? { entrypoint } : {}),
    resources,
    ...lifetimeOf(timeoutSeconds),
    env: body.env ?? {},
    metadata,
    ...(policy ? { networkPolicy: policy } : {}),
    ...(mounts.length ? { volumes: mounts } : {}),
    allPorts: true,
    publicPorts: false,
  };
}
