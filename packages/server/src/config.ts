import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { NodeCapacity, Overcommit } from "./domain/index.js";

/** This server as a node of a cluster (with SQLite: the one node there is). */
export interface ClusterConfig {
  /** Stable across restarts: the node's sandboxes are found again under it. */
  nodeId: string;
  /** URL the other nodes reach this one at; unset: the address it listens on. */
  nodeUrl: string | undefined;
  /** Key of node-to-node requests (HMAC); every node of a cluster has the same. */
  secret: string | undefined;
  /** Directory every node reaches (NFS, a ReadWriteMany volume) for paused images and snapshots. */
  sharedDir: string | undefined;
  /** A node that has not renewed its lease for this long is lost, ms. */
  leaseTtlMs: number;
  labels: Record<string, string>;
  /** Overrides of what the host offers (by default measured at start). */
  capacity: Partial<NodeCapacity>;
  /** How far live sandboxes' limits may add up beyond the capacity, per resource. */
  overcommit: Overcommit;
}

export interface ServerConfig {
  /** host:port to listen on. */
  listen: string;
  dataDir: string;
  /** PostgreSQL connection URL of the store; unset: SQLite (`sandpit.db`) in the data directory. */
  databaseUrl: string | undefined;
  /** Where built templates are kept; shared between data dirs when set (tests do this). */
  templatesDir: string;
  /** When set, this key exists for the organisation `default`. */
  apiKey: string | undefined;
  /** runsc binary and its state directory (`runsc --root`). */
  runscPath: string;
  /** gVisor platform of every sandbox of this server (SANDPIT_PLATFORM, default systrap; see README). */
  runscPlatform: RunscPlatform;
  /**
   * A running sandbox with no API activity for this long is hibernated (paused, resumed by its next
   * call) unless it opted out (SANDPIT_HIBERNATE_AFTER_MS; 0 turns hibernation off).
   */
  hibernateAfterMs: number | null;
  /**
   * At most this many idle sandboxes stay live (SANDPIT_LIVE_IDLE_MAX): past it, the longest idle are
   * hibernated before their quiet period ends, once quiet for `hibernateUnderPressureAfterMs`.
   */
  liveIdleMax: number;
  /** The least quiet time before the live-idle limit may hibernate a sandbox (SANDPIT_HIBERNATE_UNDER_PRESSURE_AFTER_MS). */
  hibernateUnderPressureAfterMs: number;
  /**
   * How pause images are written (SANDPIT_CHECKPOINT_COMPRESSION). `none` (default): a pause and its resume
   * spend no CPU on deflate, ~120 ms less each for a sandbox holding 25 MB, with images ~6× larger;
   * `flate-best-speed` where disk or shared storage is scarce.
   */
  checkpointCompression: CheckpointCompression;
  /** The agent binary that is copied into every sandbox. */
  agentBinary: string;
  /** The in-sandbox helper servers shipped with the agent (see GvisorRuntimeOptions). */
  helperServerDirs: string[];
  /** First address of the /16 (or larger) block that sandbox veth pairs are carved from. */
  sandboxSubnet: string;
  /** Maximum upload size for the file API, bytes. */
  maxUploadBytes: number;
  /** Cap on captured output of one command, bytes (stdout+stderr). */
  maxOutputBytes: number;
  /** How long destroyed sandboxes stay visible, ms. */
  destroyedRetentionMs: number;
  /** Resolver the DNS proxy asks (`host[:port]`); default: the host's first nameserver. */
  dnsUpstream: string | undefined;
  /** Let sandboxes reach the private ranges the host's own networks are in (blocked by default). */
  allowPrivateNetworks: boolean;
  /** How long egress audit entries are kept. */
  egressLogRetentionMs: number;
  /** How long lifecycle events (and webhook delivery logs) are kept. */
  eventRetentionMs: number;
  /** Webhook delivery: first retry after this long, doubling each time; attempts in all; limit of one. */
  webhooks: { retryBaseMs: number; maxAttempts: number; timeoutMs: number };
  /** PEM file of extra CAs the egress broker trusts for upstream servers (besides the system's). */
  upstreamCaFile: string | undefined;
  /** Non-public hosts (`host` or `host:port`) the server may fetch sources and images from. */
  outboundAllowedHosts: string[];
  /** Host directories under which `volumes: [{hostPath}]` may mount (none: host-path volumes are refused). */
  hostVolumePaths: string[];
  /** Registries (`host` or `host:port`) reached over plain HTTP; loopback registries always are. */
  insecureRegistries: string[];
  /** Mirrors tried before a registry: registry → base URLs, from `docker.io=http://10.0.0.5:5000,...`. */
  registryMirrors: Record<string, string[]>;
  /** Base domain of host-based port URLs: `{port}-{id}.{domain}`. */
  domain: string | undefined;
  /** Quotas of organisations that have none of their own (null: unlimited). */
  defaultQuota: { maxSandboxes: number | null; maxVcpus: number | null; maxMemoryMb: number | null };
  /** Bearer key of the admin API (`/v1/admin/...`); the admin API is off without it. */
  adminKey: string | undefined;
  /** Warm pools to keep filled: JSON `[{"id","template","size","vcpus","memoryMb","diskMb"}]`. */
  warmPools: { id: string; template: string; size: number; vcpus: number; memoryMb: number; diskMb: number }[];
  /** How many ports one sandbox may expose. */
  maxPorts: number;
  /** Time between two resource samples of each running sandbox (GET /v1/sandboxes/{id}/metrics), ms. */
  metricsIntervalMs: number;
  /** Serve Prometheus' `/metrics` without the admin key. */
  metricsPublic: boolean;
  /** Debian mirror used to build templates. */
  debianMirror: string;
  logLevel: string;
  cluster: ClusterConfig;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Built with the agent (`npm run build`): starts runsc where /proc/sys/net is hidden (see its source). */
export const runscLauncherPath = path.join(repoRoot, "packages/server/native/build/sandpit-runsc-launch");

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

function parseWarmPools(raw: string | undefined): ServerConfig["warmPools"] {
  if (!raw) return [];
  const parsed = JSON.parse(raw) as Partial<ServerConfig["warmPools"][number]>[];
  return parsed.map((p, i) => {
    if (!p.id || !p.template || typeof p.size !== "number") {
      throw new Error(`SANDPIT_WARM_POOLS[${i}] needs id, template and size`);
    }
    return {
      id: p.id,
      template: p.template,
      size: p.size,
      vcpus: p.vcpus ?? 1,
      memoryMb: p.memoryMb ?? 1024,
      diskMb: p.diskMb ?? 4096,
    };
  });
}

/** `registry=url` pairs, comma-separated; several mirrors of one registry are tried in order. */
function parseRegistryMirrors(raw: string | undefined): Record<string, string[]> {
  const mirrors: Record<string, string[]> = {};
  const pairs = (raw ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const named = pair.slice(0, eq).trim().toLowerCase();
    const url = pair
      .slice(eq + 1)
      .trim()
      .replace(/\/+$/, "");
    if (eq <= 0 || !/^https?:\/\/[^/]+(\/.*)?$/.test(url)) {
      throw new Error(`SANDPIT_REGISTRY_MIRRORS: expected registry=http(s)://host[:port], got "${pair}"`);
    }
    const registry = named === "index.docker.io" ? "docker.io" : named;
    mirrors[registry] = [...(mirrors[registry] ?? []), url];
  }
  return mirrors;
}

/** A postgres:// URL (checked without echoing it: it may hold a password). */
function parseDatabaseUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  if (!/^postgres(ql)?:\/\//.test(raw)) {
    throw new Error("SANDPIT_DATABASE_URL must be a postgres:// or postgresql:// URL");
  }
  return raw;
}

/** `k=v,k2=v2` (node labels). */
function parseLabels(raw: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of (raw ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`SANDPIT_NODE_LABELS: expected key=value, got "${pair}"`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}

/** `vcpus=8,memoryMb=16384,...` overrides of the node's capacity. */
function parseCapacity(raw: string | undefined): Partial<NodeCapacity> {
  const capacity: Partial<NodeCapacity> = {};
  const keys: (keyof NodeCapacity)[] = ["vcpus", "memoryMb", "diskMb", "sandboxes"];
  for (const [key, value] of Object.entries(parseLabels(raw))) {
    const n = Number(value);
    if (!keys.includes(key as keyof NodeCapacity) || !Number.isFinite(n) || n <= 0) {
      throw new Error(`SANDPIT_NODE_CAPACITY: expected ${keys.join("|")}=<positive number>, got "${key}=${value}"`);
    }
    capacity[key as keyof NodeCapacity] = n;
  }
  return capacity;
}

/** Host name and data directory: two servers on one host (own data dirs) are two nodes. */
function defaultNodeId(dataDir: string): string {
  const host = os
    .hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-");
  return `${host}-${createHash("sha256").update(dataDir).digest("hex").slice(0, 6)}`;
}

function nodeIdFrom(raw: string | undefined, dataDir: string): string {
  if (!raw) return defaultNodeId(dataDir);
  if (!/^[a-z0-9][a-z0-9.-]{0,62}$/.test(raw)) {
    throw new Error(`SANDPIT_NODE_ID must be 1-63 lowercase letters, digits, dots and dashes, got "${raw}"`);
  }
  return raw;
}

/** The first is the default. */
export const checkpointCompressions = ["none", "flate-best-speed"] as const;
export type CheckpointCompression = (typeof checkpointCompressions)[number];

/** A setting that names one of `values`; unset or empty: the first. */
function oneOf<T extends string>(name: string, raw: string | undefined, values: readonly T[]): T {
  if (raw === undefined || raw === "") return values[0]!;
  if (!(values as readonly string[]).includes(raw)) {
    throw new Error(`${name} must be one of ${values.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

/** The first is the default. */
export const runscPlatforms = ["systrap", "ptrace"] as const;
export type RunscPlatform = (typeof runscPlatforms)[number];

/**
 * Default 5 minutes: an idle systrap sandbox burns ~4 % of a core (gVisor's spinning threads), so ~50 idle
 * ones fill two cores, while a paused one costs no CPU and a resume is ~0.2-0.6 s. Five minutes leaves
 * interactive use (a human between commands, an agent thinking) untouched.
 */
const DEFAULT_HIBERNATE_AFTER_MS = 5 * 60_000;

function hibernateAfterFrom(raw: string | undefined): number | null {
  if (raw === undefined || raw === "") return DEFAULT_HIBERNATE_AFTER_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 0) {
    throw new Error(`SANDPIT_HIBERNATE_AFTER_MS must be a whole number of milliseconds (0: off), got "${raw}"`);
  }
  return ms === 0 ? null : ms;
}

/**
 * Idle sandboxes allowed to stay live per host CPU, from their measured idle cost (README, "Platform"):
 * ~3-4 % of a core each under systrap, ~0.6 % under ptrace. Eight per CPU under systrap keep idle
 * sandboxes to about a third of the host's CPU.
 */
const LIVE_IDLE_PER_CPU: Record<RunscPlatform, number> = { systrap: 8, ptrace: 48 };

function liveIdleMaxFrom(raw: string | undefined, platform: RunscPlatform): number {
  if (raw === undefined || raw === "") return LIVE_IDLE_PER_CPU[platform] * os.availableParallelism();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`SANDPIT_LIVE_IDLE_MAX must be a whole number of sandboxes, got "${raw}"`);
  }
  return n;
}

function envOptionalInt(name: string): number | null {
  return process.env[name] ? envInt(name, 0) : null;
}

export function loadConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const env = process.env;
  const dataDir = path.resolve(overrides.dataDir ?? env.SANDPIT_DATA_DIR ?? "/var/lib/sandpit");
  const platform = oneOf("SANDPIT_PLATFORM", env.SANDPIT_PLATFORM, runscPlatforms);
  return {
    listen: env.SANDPIT_LISTEN ?? "127.0.0.1:8080",
    dataDir,
    databaseUrl: parseDatabaseUrl(env.SANDPIT_DATABASE_URL),
    templatesDir: path.resolve(env.SANDPIT_TEMPLATES_DIR ?? path.join(dataDir, "templates")),
    apiKey: env.SANDPIT_API_KEY || undefined,
    runscPath: env.SANDPIT_RUNSC ?? "runsc",
    runscPlatform: platform,
    hibernateAfterMs: hibernateAfterFrom(env.SANDPIT_HIBERNATE_AFTER_MS),
    liveIdleMax: liveIdleMaxFrom(env.SANDPIT_LIVE_IDLE_MAX, platform),
    hibernateUnderPressureAfterMs: envInt("SANDPIT_HIBERNATE_UNDER_PRESSURE_AFTER_MS", 15_000),
    checkpointCompression: oneOf(
      "SANDPIT_CHECKPOINT_COMPRESSION",
      env.SANDPIT_CHECKPOINT_COMPRESSION,
      checkpointCompressions,
    ),
    agentBinary: env.SANDPIT_AGENT_BINARY ?? path.join(repoRoot, "packages/agent/build/sandpit-agent"),
    helperServerDirs: ["code", "desktop"].map((name) => path.join(repoRoot, "packages/agent", name)),
    sandboxSubnet: env.SANDPIT_SANDBOX_SUBNET ?? "10.231.0.0",
    maxUploadBytes: envInt("SANDPIT_MAX_UPLOAD_BYTES", 100 * 1024 * 1024),
    maxOutputBytes: envInt("SANDPIT_MAX_OUTPUT_BYTES", 16 * 1024 * 1024),
    destroyedRetentionMs: envInt("SANDPIT_DESTROYED_RETENTION_MS", 24 * 3600 * 1000),
    debianMirror: env.SANDPIT_DEBIAN_MIRROR ?? "http://deb.debian.org/debian",
    dnsUpstream: env.SANDPIT_DNS_UPSTREAM || undefined,
    allowPrivateNetworks: env.SANDPIT_ALLOW_PRIVATE_NETWORKS === "true",
    upstreamCaFile: env.SANDPIT_UPSTREAM_CA_FILE || undefined,
    egressLogRetentionMs: envInt("SANDPIT_EGRESS_LOG_RETENTION_MS", 7 * 24 * 3600 * 1000),
    eventRetentionMs: envInt("SANDPIT_EVENT_RETENTION_MS", 7 * 24 * 3600 * 1000),
    webhooks: {
      retryBaseMs: envInt("SANDPIT_WEBHOOK_RETRY_BASE_MS", 30_000),
      maxAttempts: envInt("SANDPIT_WEBHOOK_MAX_ATTEMPTS", 6),
      timeoutMs: envInt("SANDPIT_WEBHOOK_TIMEOUT_MS", 10_000),
    },
    outboundAllowedHosts: (env.SANDPIT_OUTBOUND_ALLOWED_HOSTS ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
    insecureRegistries: (env.SANDPIT_INSECURE_REGISTRIES ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
    registryMirrors: parseRegistryMirrors(env.SANDPIT_REGISTRY_MIRRORS),
    hostVolumePaths: (env.SANDPIT_HOST_VOLUME_PATHS ?? "")
      .split(":")
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => path.resolve(p)),
    domain: env.SANDPIT_DOMAIN || undefined,
    maxPorts: envInt("SANDPIT_MAX_PORTS", 8),
    defaultQuota: {
      maxSandboxes: envOptionalInt("SANDPIT_DEFAULT_MAX_SANDBOXES"),
      maxVcpus: envOptionalInt("SANDPIT_DEFAULT_MAX_VCPUS"),
      maxMemoryMb: envOptionalInt("SANDPIT_DEFAULT_MAX_MEMORY_MB"),
    },
    adminKey: env.SANDPIT_ADMIN_KEY || undefined,
    warmPools: parseWarmPools(env.SANDPIT_WARM_POOLS),
    metricsIntervalMs: envInt("SANDPIT_METRICS_INTERVAL_MS", 5000),
    metricsPublic: env.SANDPIT_METRICS_PUBLIC === "true",
    logLevel: env.SANDPIT_LOG_LEVEL ?? "info",
    cluster: {
      nodeId: nodeIdFrom(env.SANDPIT_NODE_ID, dataDir),
      nodeUrl: env.SANDPIT_NODE_URL || undefined,
      secret: env.SANDPIT_CLUSTER_SECRET || undefined,
      sharedDir: env.SANDPIT_SHARED_DIR ? path.resolve(env.SANDPIT_SHARED_DIR) : undefined,
      leaseTtlMs: envInt("SANDPIT_NODE_LEASE_TTL_MS", 10_000),
      labels: parseLabels(env.SANDPIT_NODE_LABELS),
      capacity: parseCapacity(env.SANDPIT_NODE_CAPACITY),
      overcommit: {
        // A sandbox's vCPUs are a CPU-time ceiling (cpu.max), not a reservation: idle ones cost nothing.
        cpu: envInt("SANDPIT_OVERCOMMIT_CPU", 8),
        // Memory limits are what the host must really hold when sandboxes use them.
        memory: envInt("SANDPIT_OVERCOMMIT_MEMORY", 1),
        // Disks are sparse images: a sandbox takes host disk only for what it writes.
        disk: envInt("SANDPIT_OVERCOMMIT_DISK", 4),
      },
    },
    ...overrides,
  };
}
