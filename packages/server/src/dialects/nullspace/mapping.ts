import type { CreateSandboxRequest, DesktopStream, DesktopWindow, FieldIssue, SandboxStatus } from "@sandpit/contract";
import type { z } from "zod";
import type { SandboxRecord } from "../../domain/index.js";
import { ApiError, validationError } from "../../errors.js";
import type { WarmPoolCheckout } from "../../services/warm-pool-service.js";
import type {
  NullspaceCreateSandbox,
  NullspaceErrorBody,
  NullspaceSandbox,
  NullspaceStatus,
  NullspaceVolumeAttachment,
  NullspaceVolumeMount,
  VolumeAttachmentState,
} from "./schemas.js";

/** The header Nullspace clients send the traffic access token in. */
export const TRAFFIC_ACCESS_TOKEN_HEADER = "x-nullspace-traffic-access-token";
/** Runtime paths Nullspace keeps for itself: a sandbox's working directory may not be under them. */
const RESERVED_CWD = "/workspace/.nullspace";
const MAX_CWD_LENGTH = 4096;
/** Sandpit sizes memory in steps of this many MiB. */
const MEMORY_STEP_MB = 256;
/** Metadata key listing the keys whose values are JSON-encoded (Sandpit stores metadata as strings). */
export const JSON_METADATA_KEY = "nullspace.json_keys";
/** Metadata key under which responses show the attached volumes (in request order). */
export const VOLUME_ATTACHMENTS_KEY = "volume_attachments";

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/**
 * A `cwd` as Nullspace accepts it: absolute, normalized (`.`, `..`, repeated and trailing slashes
 * resolved), never above the sandbox root and never under the reserved `/workspace/.nullspace`.
 */
export function normalizeCwd(raw: string): { path: string } | { error: string } {
  if (!raw.startsWith("/")) return { error: "must be an absolute path" };
  if (raw.includes("\0")) return { error: "must not contain NUL" };
  const segments: string[] = [];
  for (const segment of raw.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (segments.length === 0) return { error: "must stay within the sandbox root" };
      segments.pop();
    } else segments.push(segment);
  }
  const path = `/${segments.join("/")}`;
  if (path.length > MAX_CWD_LENGTH) return { error: `must be at most ${MAX_CWD_LENGTH} characters` };
  if (isReservedPath(path)) return { error: `must not be under the reserved ${RESERVED_CWD}` };
  return { path };
}

/** Whether an absolute path is, or is under, the runtime paths Nullspace keeps for itself. */
export function isReservedPath(path: string): boolean {
  const segments: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "..") segments.pop();
    else if (segment !== "" && segment !== ".") segments.push(segment);
  }
  const p = `/${segments.join("/")}`;
  return p === RESERVED_CWD || p.startsWith(`${RESERVED_CWD}/`);
}

/** Nullspace's `memory_mb` (any positive size) rounded up to the next size Sandpit runs. */
export function memoryMbFor(requested: number): number {
  return Math.max(MEMORY_STEP_MB, Math.ceil(requested / MEMORY_STEP_MB) * MEMORY_STEP_MB);
}

/** `template` is a template name, or a Docker image when it names a registry, repository path, tag or digest. */
export function isImageReference(template: string): boolean {
  return /[/:@]/.test(template);
}

/**
 * Nullspace metadata (any JSON values) as Sandpit metadata (strings): strings stay as they are, other
 * values are stored as JSON text and their keys listed under `nullspace.json_keys`.
 */
export function encodeMetadata(metadata: Record<string, Json>): Record<string, string> {
  const encoded: Record<string, string> = {};
  const jsonKeys: string[] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value === "string") encoded[key] = value;
    else {
      encoded[key] = JSON.stringify(value);
      jsonKeys.push(key);
    }
  }
  if (jsonKeys.length) encoded[JSON_METADATA_KEY] = JSON.stringify(jsonKeys);
  return encoded;
}

/** The metadata as the client sent it. */
export function decodeMetadata(stored: Record<string, string>): Record<string, Json> {
  let jsonKeys: string[] = [];
  try {
    const listed: unknown = JSON.parse(stored[JSON_METADATA_KEY] ?? "[]");
    if (Array.isArray(listed)) jsonKeys = listed.filter((k): k is string => typeof k === "string");
  } catch {
    jsonKeys = [];
  }
  const decoded: Record<string, Json> = {};
  for (const [key, value] of Object.entries(stored)) {
    if (key === JSON_METADATA_KEY) continue;
    if (!jsonKeys.includes(key)) {
      decoded[key] = value;
      continue;
    }
    try {
      decoded[key] = JSON.parse(value) as Json;
    } catch {
      decoded[key] = value;
    }
  }
  return decoded;
}

/** Refs that are volume ids rather than names (names are DNS labels and never hold `_`). */
export const isVolumeId = (ref: string) => ref.startsWith("vol_");

/**
 * Nullspace volume mounts as Sandpit's. `ref` must be a volume name by now (the route resolves ids);
 * `subpath` is rooted at the volume's `/`, Sandpit's subPath is relative to it.
 */
export function volumeMountsFrom(volumes: NullspaceVolumeMount[]) {
  return volumes.map((v) => {
    const subPath = v.subpath?.replace(/^\/+/, "") ?? "";
    return {
      name: v.ref,
      mountPath: v.mount_path,
      readOnly: v.read_only,
      ...(subPath !== "" ? { subPath } : {}),
    };
  });
}

/** A Nullspace create request as Sandpit's native create request (validated by the contract after). */
export function createRequestFrom(body: NullspaceCreateSandbox): CreateSandboxRequest {
  const hibernate = body.timeout_action === "hibernate" || body.lifecycle?.on_timeout === "pause";
  const fromSnapshot = body.snapshot_id !== undefined;
  const image = !fromSnapshot && isImageReference(body.template);
  return {
    ...(fromSnapshot ? { snapshotId: body.snapshot_id } : {}),
    ...(image ? { image: { uri: body.template } } : {}),
    ...(!fromSnapshot && !image ? { template: body.template } : {}),
    resources: {
      vcpus: body.vcpus,
      memoryMb: memoryMbFor(body.memory_mb),
      ...(body.disk_mb !== undefined ? { diskMb: body.disk_mb } : {}),
    },
    timeoutMs: body.timeout_ms,
    timeoutAction: hibernate ? "pause" : "destroy",
    autoResume: body.auto_resume,
    env: body.envs,
    metadata: encodeMetadata(body.metadata as Record<string, Json>),
    ...(body.cwd !== undefined ? { cwd: body.cwd } : {}),
    ...(body.volumes?.length ? { volumes: volumeMountsFrom(body.volumes) } : {}),
    ...(body.desktop ? { desktop: body.desktop } : {}),
    ...(body.internet_access ? {} : { internetAccess: false }),
    ...(body.warm_pool
      ? { warmPool: { mode: body.warm_pool.mode, ...(body.warm_pool.id ? { poolId: body.warm_pool.id } : {}) } }
      : {}),
    // Nullspace's proxy reaches any port of the sandbox; the token guards it unless traffic is public.
    allPorts: true,
    publicPorts: body.network?.allow_public_traffic ?? true,
  };
}

/** Sandpit's statuses folded into Nullspace's five: transitions show where they are heading. */
export function statusOf(status: SandboxStatus): NullspaceStatus {
  switch (status) {
    case "pausing":
    case "paused":
      return "paused";
    case "resuming":
      return "running";
    case "destroying":
      return "destroyed";
    default:
      return status;
  }
}

/** The state of a sandbox's mounts, from the sandbox's status. */
function attachmentStateOf(status: SandboxStatus): VolumeAttachmentState {
  switch (status) {
    case "creating":
      return "mounting";
    case "running":
      return "mounted";
    case "pausing":
    case "paused":
      return "paused";
    case "resuming":
      return "remounting";
    case "destroying":
      return "releasing";
    case "destroyed":
      return "released";
    default:
      return "failed";
  }
}

/** `metadata.volume_attachments`: the sandbox's mounts in request order (snapshot children inherit them). */
export function volumeAttachmentsOf(
  record: Pick<SandboxRecord, "id" | "status" | "volumes">,
): NullspaceVolumeAttachment[] {
  const state = attachmentStateOf(record.status);
  return record.volumes.map((m, i) => ({
    id: `${record.id}.volumes.${i}`,
    ...(m.volumeId !== undefined ? { volume_id: m.volumeId } : {}),
    ...(m.name !== undefined ? { volume_name: m.name } : {}),
    ...(m.hostPath !== undefined ? { host_path: m.hostPath } : {}),
    mount_path: m.mountPath,
    subpath: `/${m.subPath ?? ""}`,
    read_only: m.readOnly,
    state,
  }));
}

/** A Sandpit sandbox as Nullspace's sandbox; the traffic access token only in the create response. */
export function sandboxOf(
  record: SandboxRecord,
  extras: { checkout?: WarmPoolCheckout | undefined; withTrafficToken?: boolean } = {},
): NullspaceSandbox {
  const iso = (ms: number | null) => (ms === null ? undefined : new Date(ms).toISOString());
  const startedAt = iso(record.startedAt);
  const status = statusOf(record.status);
  // A hibernating sandbox does not expire: its timeout starts again when it resumes.
  const timeoutAt = status === "paused" ? undefined : iso(record.expiresAt);
  const checkout = extras.checkout;
  return {
    id: record.id,
    status,
    config: { vcpus: record.vcpus, memory_mb: record.memoryMb, disk_mb: record.diskMb },
    template: record.template.startsWith("image:") ? record.template.slice("image:".length) : record.template,
    created_at: new Date(record.createdAt).toISOString(),
    metadata: {
      ...decodeMetadata(record.metadata),
      ...(record.volumes.length ? { [VOLUME_ATTACHMENTS_KEY]: volumeAttachmentsOf(record) } : {}),
    },
    ...(startedAt ? { started_at: startedAt } : {}),
    timeout_ms: record.timeoutMs,
    ...(timeoutAt ? { timeout_at: timeoutAt, expires_at: timeoutAt } : {}),
    timeout_action: record.timeoutAction === "pause" ? "hibernate" : "destroy",
    cwd: record.cwd,
    ...(record.desktop
      ? { desktop: { width: record.desktop.width, height: record.desktop.height, dpi: record.desktop.dpi } }
      : {}),
    ...(extras.withTrafficToken ? { traffic_access_token: record.trafficToken } : {}),
    ...(checkout?.poolId ? { warm_pool_checkout: { hit: checkout.hit, id: checkout.poolId } } : {}),
  };
}

/** Fields of the desktop requests whose Nullspace name (snake_case) differs from Sandpit's. */
const DESKTOP_FIELDS: Record<string, string> = { from_x: "fromX", from_y: "fromY", view_only: "viewOnly" };
const DESKTOP_FIELDS_BACK = Object.fromEntries(Object.entries(DESKTOP_FIELDS).map(([snake, camel]) => [camel, snake]));

/**
 * A desktop request body in Nullspace's snake_case, validated as Sandpit's: errors name Nullspace's fields,
 * and the camelCase spellings, which are not Nullspace's, are refused naming the field to use instead.
 */
export function desktopRequestFrom<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  let native = body;
  if (body !== null && typeof body === "object" && !Array.isArray(body)) {
    const renamed: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(body)) {
      const snake = DESKTOP_FIELDS_BACK[key];
      if (snake !== undefined) {
        const message = `is not a field (${snake} is)`;
        throw new ApiError("validation_failed", `Invalid request: ${key}: ${message}`, {
          fields: [{ field: key, rule: "unrecognized_keys", message }],
        });
      }
      renamed[DESKTOP_FIELDS[key] ?? key] = value;
    }
    native = renamed;
  }
  const parsed = schema.safeParse(native);
  if (parsed.success) return parsed.data;
  const issues = ((validationError(parsed.error).details?.fields ?? []) as FieldIssue[]).map((f) => ({
    ...f,
    field: DESKTOP_FIELDS_BACK[f.field] ?? f.field,
  }));
  const summary = issues.map((f) => `${f.field}: ${f.message}`).join("; ");
  throw new ApiError("validation_failed", `Invalid request: ${summary}`, { fields: issues });
}

/** A desktop window in Nullspace's snake_case. */
export function desktopWindowOf(w: DesktopWindow) {
  const { className, instanceName, ...rest } = w;
  return { ...rest, class_name: className, instance_name: instanceName };
}

/** A desktop live view in Nullspace's snake_case. */
export function desktopStreamOf(s: DesktopStream) {
  return {
    stream_id: s.streamId,
    view_only: s.viewOnly,
    url: s.url,
    token: s.token,
    started_at: s.startedAt,
    expires_at: s.expiresAt,
  };
}

/** Sandpit's field names (native request paths) as the Nullspace fields they came from. */
export function nullspaceField(field: string): string {
  const exact: Record<string, string> = {
    "resources.vcpus": "vcpus",
    "resources.memoryMb": "memory_mb",
    "resources.diskMb": "disk_mb",
    timeoutMs: "timeout_ms",
    timeoutAction: "timeout_action",
    autoResume: "auto_resume",
    internetAccess: "internet_access",
    snapshotId: "snapshot_id",
    "image.uri": "template",
    image: "template",
    "warmPool.poolId": "warm_pool.id",
    "warmPool.mode": "warm_pool.mode",
  };
  if (exact[field]) return exact[field];
  if (field.startsWith("env.") || field === "env") return `envs${field.slice(3)}`;
  const mount = /^volumes\.(\d+)\.(name|mountPath|readOnly|subPath)$/.exec(field);
  if (mount) {
    const names: Record<string, string> = {
      name: "ref",
      mountPath: "mount_path",
      readOnly: "read_only",
      subPath: "subpath",
    };
    return `volumes.${mount[1]}.${names[mount[2]!]}`;
  }
  return field;
}

const CODES: Partial<Record<ApiError["code"], string>> = {
  validation_failed: "invalid_request",
  bad_request: "invalid_request",
  sandbox_not_found: "not_found",
  template_not_found: "not_found",
  command_not_found: "not_found",
  file_not_found: "not_found",
  invalid_state: "conflict",
  desktop_unavailable: "conflict",
  volume_not_found: "not_found",
  volume_in_use: "conflict",
  idempotency_mismatch: "idempotency_key_conflict",
  source_failed: "invalid_request",
  not_implemented: "not_supported",
  internal: "internal_error",
  runtime_unavailable: "unavailable",
  no_capacity: "unavailable",
  node_fenced: "unavailable",
  database_unavailable: "unavailable",
};

/**
 * A Sandpit error in Nullspace's shape. The same Idempotency-Key with a different request is a 409
 * conflict; a missing key is `idempotency_key_required`; validation errors name Nullspace's fields.
 */
export function errorReplyOf(error: ApiError, requestId: string): { status: number; body: NullspaceErrorBody } {
  const issues = (error.details?.fields as FieldIssue[] | undefined) ?? [];
  const fields = issues.map((f) => ({ field: nullspaceField(f.field), message: f.message }));
  const keyMissing = issues.some((f) => f.field === "Idempotency-Key" && f.rule === "required");
  const status = error.code === "idempotency_mismatch" ? 409 : error.status;
  const code = keyMissing ? "idempotency_key_required" : (CODES[error.code] ?? error.code);
  const named = fields.map((f) => `${f.field}: ${f.message}`).join("; ");
  const message = fields.length ? (status === 400 ? `Invalid request: ${named}` : named) : error.message;
  return {
    status,
    body: { error: { code, message, status, request_id: requestId, ...(fields.length ? { fields } : {}) } },
  };
}
