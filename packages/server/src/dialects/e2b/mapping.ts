import type { CreateSandboxRequest, MetricsSample, NetworkPolicyInput } from "@sandpit/contract";
import { z } from "zod";
import type { SandboxRecord, VolumeRecord } from "../../domain/index.js";
import type { SandboxLogEntry } from "../../services/sandbox-log.js";
import type { VolumeEntry } from "../../services/volume-files.js";

/** The envd version Sandpit's envd speaks: the SDK gates features (octet-stream uploads, …) on it. */
export const ENVD_VERSION = "0.5.7";
/** The port E2B's SDK addresses its in-sandbox daemon on. */
export const ENVD_PORT = 49983;

/** E2B's template names that mean a built-in template: `@e2b/code-interpreter` creates `code-interpreter-v1`. */
const E2B_TEMPLATE_ALIASES: Readonly<Record<string, string>> = { "code-interpreter-v1": "code-interpreter" };

/** An E2B template name as Sandpit's. */
export const templateFrom = (templateId: string): string => E2B_TEMPLATE_ALIASES[templateId] ?? templateId;

const networkSchema = z
  .object({
    allowPublicTraffic: z.boolean().optional(),
    allowOut: z.array(z.string()).optional(),
    denyOut: z.array(z.string()).optional(),
    rules: z.record(z.string(), z.unknown()).optional(),
  })
  .passthrough();

/** `POST /sandboxes` and `/v2/sandboxes` bodies (`mcp` is accepted and ignored). */
export const newSandboxSchema = z
  .object({
    templateID: z.string().min(1),
    timeout: z.number().int().min(0).optional(),
    autoPause: z.boolean().optional(),
    autoPauseMemory: z.boolean().optional(),
    autoResume: z.object({ enabled: z.boolean() }).optional(),
    secure: z.boolean().optional(),
    allow_internet_access: z.boolean().optional(),
    network: networkSchema.optional(),
    metadata: z.record(z.string(), z.string()).optional(),
    envVars: z.record(z.string(), z.string()).optional(),
    mcp: z.unknown().optional(),
    volumeMounts: z.array(z.object({ name: z.string(), path: z.string() })).optional(),
  })
  .passthrough();
export type NewSandbox = z.infer<typeof newSandboxSchema>;

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/;
const cidrOf = (entry: string) => (entry.includes("/") ? entry : `${entry}/32`);

/**
 * E2B's egress settings as a Sandpit policy. E2B lets allowed entries win over denied ones; Sandpit
 * checks denies first, so an allow-list with `denyOut: ["0.0.0.0/0"]` becomes a custom policy that
 * allows only the list (Sandpit's custom mode denies everything else), and a deny-list alone becomes
 * "everything but these".
 */
export function networkPolicyFrom(
  body: Pick<NewSandbox, "network" | "allow_internet_access">,
): NetworkPolicyInput | undefined {
  const allow = body.network?.allowOut ?? [];
  const deny = (body.network?.denyOut ?? []).map(cidrOf);
  if (body.allow_internet_access === false && allow.length === 0) return { mode: "deny-all" };
  if (allow.length === 0 && deny.length === 0) return undefined;
  const allowCidrs = allow.filter((a) => IPV4.test(a)).map(cidrOf);
  const allowDomains = allow.filter((a) => !IPV4.test(a));
  const denyAll = body.allow_internet_access === false || deny.includes("0.0.0.0/0");
  if (allow.length > 0) {
    return {
      mode: "custom",
      allow: { cidrs: allowCidrs, domains: allowDomains },
      deny: { cidrs: denyAll ? [] : deny.filter((d) => !allowCidrs.includes(d)) },
    };
  }
  if (denyAll) return { mode: "deny-all" };
  return { mode: "custom", allow: { cidrs: ["0.0.0.0/0"] }, deny: { cidrs: deny } };
}

/** An E2B create request as Sandpit's; the template must be one of Sandpit's (or the org's own). */
export function createRequestFrom(body: NewSandbox): CreateSandboxRequest {
  const policy = networkPolicyFrom(body);
  return {
    template: templateFrom(body.templateID),
    // E2B's API default is 15 s; its SDK always sends the user's timeout (default 300 s).
    timeoutMs: Math.max(1, body.timeout ?? 15) * 1000,
    env: body.envVars ?? {},
    metadata: body.metadata ?? {},
    timeoutAction: body.autoPause ? "pause" : "destroy",
    autoResume: body.autoResume?.enabled === true,
    ...(policy ? { networkPolicy: policy } : {}),
    // `name` is the volume's name, `path` where it appears; Sandpit checks both and names the field.
    ...(body.volumeMounts?.length
      ? { volumes: body.volumeMounts.map((m) => ({ name: m.name, mountPath: m.path })) }
      : {}),
    // E2B exposes every port of a sandbox; traffic needs a token only when public traffic is off.
    allPorts: true,
    publicPorts: body.network?.allowPublicTraffic !== false,
    warmPool: { mode: "bypass" },
  };
}

type E2bState = "running" | "paused";

/** Sandpit's statuses as E2B's two states; a sandbox on its way somewhere shows where it is going. */
export function stateOf(record: Pick<SandboxRecord, "status">): E2bState {
  return record.status === "paused" || record.status === "pausing" ? "paused" : "running";
}

const iso = (ms: number | null) => new Date(ms ?? Date.now()).toISOString();

/** `Sandbox` (the create/connect answer). */
export function sandboxOf(record: SandboxRecord, domain: string | null, envdAccessToken: string) {
  return {
    templateID: record.template,
    sandboxID: record.id,
    alias: record.template,
    clientID: "sandpit",
    envdVersion: ENVD_VERSION,
    envdAccessToken,
    trafficAccessToken: record.publicPorts ? null : record.trafficToken,
    domain,
  };
}

/** `ListedSandbox`. */
export function listedSandboxOf(record: SandboxRecord) {
  return {
    templateID: record.template,
    alias: record.template,
    sandboxID: record.id,
    clientID: "sandpit",
    startedAt: iso(record.startedAt ?? record.createdAt),
    endAt: iso(record.expiresAt ?? record.destroyedAt ?? Date.now() + record.timeoutMs),
    cpuCount: record.vcpus,
    memoryMB: record.memoryMb,
    diskSizeMB: record.diskMb,
    metadata: record.metadata,
    state: stateOf(record),
    envdVersion: ENVD_VERSION,
    volumeMounts: volumeMountsOf(record),
  };
}

/** A sandbox's named volumes as E2B's `volumeMounts` (host directories have no E2B form). */
export function volumeMountsOf(record: Pick<SandboxRecord, "volumes">): { name: string; path: string }[] {
  return record.volumes.flatMap((m) => (m.name !== undefined ? [{ name: m.name, path: m.mountPath }] : []));
}

/** `Volume`, and `VolumeAndToken` when the token is given. */
export function volumeOf(record: Pick<VolumeRecord, "id" | "name">, token?: string) {
  return { volumeID: record.id, name: record.name, ...(token !== undefined ? { token } : {}) };
}

/** `VolumeEntryStat` of the volume content API. */
export function volumeEntryStatOf(entry: VolumeEntry) {
  return {
    name: entry.name,
    path: entry.path,
    type: entry.type,
    size: entry.size,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    atime: entry.atime.toISOString(),
    mtime: entry.mtime.toISOString(),
    ctime: entry.ctime.toISOString(),
    ...(entry.target !== undefined ? { target: entry.target } : {}),
  };
}

/** `SandboxDetail`. */
export function sandboxDetailOf(record: SandboxRecord, domain: string | null, envdAccessToken: string) {
  const policy = record.networkPolicy;
  return {
    ...listedSandboxOf(record),
    envdAccessToken,
    allowInternetAccess: policy.mode === "deny-all" ? false : policy.mode === "allow-all" ? true : null,
    domain,
    network: {
      allowPublicTraffic: record.publicPorts,
      ...(policy.mode === "custom"
        ? { allowOut: [...policy.allow.cidrs, ...policy.allow.domains], denyOut: policy.deny.cidrs }
        : {}),
    },
    lifecycle: { onTimeout: record.timeoutAction === "pause" ? "pause" : "kill", autoResume: record.autoResume },
  };
}

/**
 * The `metadata` query of `GET /v2/sandboxes`: `key=value&key2=value2`, each key and value
 * URL-encoded (and the whole parameter encoded once more by the query string).
 */
export function parseMetadataQuery(query: string | undefined): Record<string, string> {
  if (!query) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) out[decodeURIComponent(k)] = decodeURIComponent(v);
  return out;
}

/** `state=running,paused` (also repeated parameters) as E2B states; both when absent. */
export function parseStates(state: string | string[] | undefined): E2bState[] {
  const raw = (Array.isArray(state) ? state : state ? [state] : []).flatMap((s) => s.split(","));
  const states = raw.filter((s): s is E2bState => s === "running" || s === "paused");
  return states.length ? states : ["running", "paused"];
}

/** `SandboxMetric`: E2B counts CPU as a percentage of the sandbox's cores and sizes in bytes. */
export function metricOf(sample: MetricsSample, vcpus: number) {
  const at = Date.parse(sample.at);
  return {
    timestamp: sample.at,
    timestampUnix: Math.floor(at / 1000),
    cpuCount: vcpus,
    cpuUsedPct: sample.cpuPercent,
    memUsed: sample.memoryBytes,
    memTotal: sample.memoryLimitBytes,
    memCache: 0,
    diskUsed: sample.diskBytes,
    diskTotal: sample.diskLimitBytes,
  };
}

/** `SandboxLogEntry`: a line of Sandpit's sandbox log. */
export function logEntryOf(entry: SandboxLogEntry) {
  return {
    timestamp: new Date(entry.at).toISOString(),
    level: entry.level,
    message: entry.message,
    fields: { logger: entry.logger, ...entry.fields },
  };
}

/**
 * `SandboxLog` of the deprecated logs route: E2B's line is a JSON object (`level`, `logger` and the
 * entry's fields), which `e2b sandbox logs` parses and prints.
 */
export function logLineOf(entry: ReturnType<typeof logEntryOf>) {
  return {
    timestamp: entry.timestamp,
    line: JSON.stringify({ level: entry.level, message: entry.message, ...entry.fields }),
  };
}
