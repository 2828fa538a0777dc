import path from "node:path";
import { type CreateSandboxRequest, type FieldIssue, limits, type SandboxStatus } from "@sandpit/contract";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { SandboxFileInfo } from "../../services/sandbox-files.js";
import type { DaytonaCreateSandbox } from "./schemas.js";

/** Where the dialect lives: the API (the SDK's `DAYTONA_API_URL`) and the toolbox proxy it hands out. */
export const DAYTONA_PREFIX = "/daytona";
export const DAYTONA_API_PREFIX = `${DAYTONA_PREFIX}/api`;
export const DAYTONA_TOOLBOX_PREFIX = `${DAYTONA_PREFIX}/toolbox`;

/** Metadata keys the dialect keeps for itself; labels never show or set them. */
export const META = { prefix: "daytona.", name: "daytona.name", snapshot: "daytona.snapshot" } as const;

/** The template a create without `snapshot` starts from: Sandpit's base (python3, node, git, bash). */
export const DEFAULT_TEMPLATE = "base";

const MB_PER_GB = 1024;

/** Daytona's states for Sandpit's statuses: a paused Sandpit sandbox is a stopped Daytona one. */
const STATES: Record<SandboxStatus, string> = {
  creating: "creating",
  running: "started",
  pausing: "stopping",
  paused: "stopped",
  resuming: "starting",
  destroying: "destroying",
  destroyed: "destroyed",
  error: "error",
};

export function stateOf(status: SandboxStatus): string {
  return STATES[status];
}

/** The sandbox's labels: its metadata without the dialect's own keys. */
export function labelsOf(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).filter(([k]) => !k.startsWith(META.prefix)));
}

/** A Sandpit sandbox as Daytona's `Sandbox` DTO. Environment values are never returned (only Sandpit keeps them). */
export function sandboxOf(record: SandboxRecord, toolboxProxyUrl: string) {
  const idleMinutes = record.idleTimeoutMs === null ? 0 : Math.round(record.idleTimeoutMs / 60_000);
  const state = stateOf(record.status);
  return {
    id: record.id,
    organizationId: record.orgId,
    name: record.metadata[META.name] ?? record.id,
    snapshot: record.metadata[META.snapshot] ?? record.template,
    user: record.user ?? "root",
    env: {},
    labels: labelsOf(record.metadata),
    public: record.publicPorts,
    networkBlockAll: record.networkPolicy.mode === "deny-all",
    target: "sandpit",
    cpu: record.vcpus,
    gpu: 0,
    memory: Math.round(record.memoryMb / MB_PER_GB),
    disk: Math.round(record.diskMb / MB_PER_GB),
    state,
    desiredState:
      state === "stopped" || state === "stopping" ? "stopped" : state === "destroyed" ? "destroyed" : "started",
    ...(record.status === "error" ? { errorReason: record.reason ?? "error" } : {}),
    recoverable: false,
    autoStopInterval: idleMinutes,
    autoArchiveInterval: 0,
    autoDeleteInterval: -1,
    volumes: [],
    createdAt: new Date(record.createdAt).toISOString(),
    updatedAt: new Date(record.startedAt ?? record.createdAt).toISOString(),
    daemonVersion: "sandpit",
    toolboxProxyUrl,
  };
}

function notSupported(field: string, what: string): ApiError {
  return new ApiError("not_implemented", `${field}: ${what} is not supported by Sandpit`, { field });
}

/** The image a Dockerfile names when it is only `FROM <image>` (what `image: "python:3.12"` sends). */
export function baseImageOf(dockerfile: string): string | undefined {
  const lines = dockerfile
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const from = lines.length === 1 ? /^FROM\s+(\S+)$/i.exec(lines[0]!) : null;
  return from?.[1];
}

/** Where a create starts from: a template (by Daytona snapshot name), a Sandpit snapshot, or an image. */
export type Startup = { template: string } | { snapshotId: string } | { image: { uri: string } };

export function startupOf(body: DaytonaCreateSandbox, isTemplate: (name: string) => boolean): Startup {
  if (body.buildInfo) {
    if (body.buildInfo.contextHashes?.length) {
      throw notSupported("buildInfo.contextHashes", "building an image with files from the client");
    }
    const image = baseImageOf(body.buildInfo.dockerfileContent);
    if (!image) throw notSupported("buildInfo.dockerfileContent", "building a Dockerfile with more than a FROM line");
    return { image: { uri: image } };
  }
  const snapshot = body.snapshot;
  if (snapshot === undefined || snapshot === "") return { template: DEFAULT_TEMPLATE };
  if (/^snp_[a-z2-7]{20}$/.test(snapshot)) return { snapshotId: snapshot };
  if (isTemplate(snapshot)) return { template: snapshot };
  throw new ApiError("validation_failed", `snapshot: ${snapshot} is not a template or snapshot of this server`, {
    fields: [
      { field: "snapshot", rule: "not_found", message: `${snapshot} is not a template or snapshot of this server` },
    ],
  });
}

/** A whole number of GB within Sandpit's limits, in MB; issues name Daytona's field. */
function gbToMb(field: "memory" | "disk", gb: number | undefined, issues: FieldIssue[]): number | undefined {
  if (gb === undefined) return undefined;
  const lim = field === "memory" ? limits.memoryMb : limits.diskMb;
  const mb = gb * MB_PER_GB;
  if (mb < lim.min || mb > lim.max) {
    const range = `between ${Math.ceil(lim.min / MB_PER_GB)} and ${Math.floor(lim.max / MB_PER_GB)} (GB)`;
    issues.push({ field, rule: "range", message: `must be ${range}` });
  }
  return mb;
}

/**
 * Daytona's create request as Sandpit's. Sandboxes are persistent (Daytona's live until deleted); the
 * auto-stop (or auto-pause) interval is Sandpit's idle timeout, after which the sandbox is paused —
 * a stopped Daytona sandbox. 0 (never) is Sandpit's longest idle timeout.
 */
export function createRequestFrom(body: DaytonaCreateSandbox, startup: Startup): CreateSandboxRequest {
  if (body.gpu) throw notSupported("gpu", "GPUs");
  if (body.gpuType?.length) throw notSupported("gpuType", "GPUs");
  if (body.spot) throw notSupported("spot", "spot sandboxes");
  if (body.kvm) throw notSupported("kvm", "KVM inside sandboxes");
  if (body.volumes?.length) throw notSupported("volumes", "Daytona volumes (use Sandpit's volumes API)");
  if (body.secrets?.length) throw notSupported("secrets", "Daytona secrets");
  if (body.linkedSandbox !== undefined) throw notSupported("linkedSandbox", "linked sandboxes");
  if (body.networkAllowList !== undefined)
    throw notSupported("networkAllowList", "CIDR allow lists (use networkPolicy)");
  if (body.domainAllowList !== undefined)
    throw notSupported("domainAllowList", "domain allow lists (use networkPolicy)");
  if (body.outboundProxyUrl !== undefined) throw notSupported("outboundProxyUrl", "an outbound proxy");
  if (body.otelEndpointOverride !== undefined) throw notSupported("otelEndpointOverride", "OpenTelemetry export");
  if (body.ttlMinutes) throw notSupported("ttlMinutes", "a fixed time to live of a persistent sandbox");
  if (body.autoArchiveInterval) throw notSupported("autoArchiveInterval", "archiving (stopped sandboxes stay on disk)");
  if (body.autoDeleteInterval !== undefined && body.autoDeleteInterval >= 0) {
    throw notSupported("autoDeleteInterval", "deleting sandboxes automatically after they stop (ephemeral)");
  }
  const issues: FieldIssue[] = [];
  const memoryMb = gbToMb("memory", body.memory, issues);
  const diskMb = gbToMb("disk", body.disk, issues);
  if (issues.length) {
    const summary = issues.map((i) => `${i.field}: ${i.message}`).join("; ");
    throw new ApiError("validation_failed", `Invalid request: ${summary}`, { fields: issues });
  }
  const idleMinutes = body.autoPauseInterval || body.autoStopInterval;
  const idleTimeoutMs =
    idleMinutes === undefined
      ? 15 * 60_000
      : idleMinutes === 0
        ? limits.timeoutMs.max
        : Math.min(Math.max(idleMinutes * 60_000, limits.timeoutMs.min), limits.timeoutMs.max);
  const metadata: Record<string, string> = { ...body.labels };
  if (body.name !== undefined) metadata[META.name] = body.name;
  if (body.snapshot) metadata[META.snapshot] = body.snapshot;
  return {
    ...startup,
    ...(body.user !== undefined ? { user: body.user } : {}),
    env: body.env ?? {},
    metadata,
    resources: {
      ...(body.cpu !== undefined ? { vcpus: body.cpu } : {}),
      ...(memoryMb !== undefined ? { memoryMb } : {}),
      ...(diskMb !== undefined ? { diskMb } : {}),
    },
    ...(body.networkBlockAll ? { internetAccess: false } : {}),
    lifecycle: "persistent",
    idleTimeoutMs,
    autoResume: true,
    publicPorts: body.public ?? false,
    allPorts: true,
  };
}

/** Sandpit's field names in a create's validation errors, as the Daytona fields they came from. */
export function daytonaField(field: string): string {
  const exact: Record<string, string> = {
    "resources.vcpus": "cpu",
    "resources.memoryMb": "memory",
    "resources.diskMb": "disk",
    template: "snapshot",
    "image.uri": "buildInfo.dockerfileContent",
    idleTimeoutMs: "autoStopInterval",
  };
  if (exact[field]) return exact[field];
  if (field.startsWith("metadata")) return field.replace(/^metadata/, "labels");
  return field;
}

/**
 * A command line split the way Daytona's daemon splits it (no shell): on spaces outside quotes, quotes
 * removed. `sh -c "…"` runs a shell line.
 */
export function splitCommand(command: string): string[] {
  const args: string[] = [];
  let current = "";
  let quote: string | undefined;
  for (const c of command) {
    if ((c === '"' || c === "'") && (quote === undefined || quote === c)) {
      quote = quote === undefined ? c : undefined;
    } else if (c === " " && quote === undefined) {
      if (current !== "") args.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  if (current !== "") args.push(current);
  return args;
}

/** Daytona's `FileInfo` for a sandbox entry. */
export function fileInfoOf(entry: SandboxFileInfo, owner: string, group: string) {
  const isDir = entry.type === "dir";
  return {
    name: path.posix.basename(entry.path),
    path: entry.path,
    isDir,
    size: entry.size,
    modTime: entry.mtime,
    modifiedAt: entry.mtime,
    mode: modeString(entry.mode, isDir),
    permissions: (entry.mode & 0o7777).toString(8).padStart(4, "0"),
    owner,
    group,
  };
}

/** `drwxr-xr-x` as Go's FileMode prints it. */
function modeString(mode: number, isDir: boolean): string {
  const bits = "rwxrwxrwx";
  let s = isDir ? "d" : "-";
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : "-";
  return s;
}
