import {
  type CreateSandboxRequest,
  type ExposedPort,
  listPortsResponseSchema,
  listSandboxesResponseSchema,
  type MetadataPatch,
  type MetricsSample,
  type NetworkPolicyInput,
  type Sandbox as SandboxInfo,
  type SandboxMetrics,
  type SandboxStatus,
  type Snapshot,
  sandboxMetricsSchema,
  sandboxSchema,
  snapshotSchema,
} from "@sandpit/contract";
import { ApiClient } from "./api-client.js";
import { Code } from "./code.js";
import { Commands } from "./commands.js";
import { type ConnectionOptions, resolveConfig } from "./config.js";
import { Desktop } from "./desktop.js";
import {
  type EgressLogEntry,
  type EgressLogFilter,
  type EgressLogFollowOptions,
  followEgressLog,
  listEgressLog,
} from "./egress-log.js";
import { Files } from "./files.js";
import { Terminals } from "./terminals.js";

export type {
  CreateSandboxRequest,
  ExposedPort,
  MetadataPatch,
  MetricsSample,
  NetworkPolicyInput,
  SandboxInfo,
  SandboxMetrics,
  SandboxStatus,
};

/** The sandbox's exposed ports, as {@link Sandbox.ports} returns them. */
export interface SandboxPorts {
  /** Each exposed port with its URLs. */
  ports: ExposedPort[];
  /** Whether the URLs answer without a traffic token. */
  public: boolean;
  /** The header that carries a traffic token to a port that is not public. */
  trafficTokenHeader: string;
}

/** Which sandboxes {@link Sandbox.list} returns. */
export interface SandboxFilter {
  /** Only sandboxes in this status, or in any of these. */
  status?: SandboxStatus | SandboxStatus[];
  /** Only sandboxes whose metadata has every one of these key/value pairs. */
  metadata?: Record<string, string>;
  /** Include destroyed sandboxes, which are left out by default. */
  includeDestroyed?: boolean;
  /** At most this many sandboxes (the server's default is 100). */
  limit?: number;
}

/**
 * A gVisor sandbox on a Sandpit server. Its properties mirror the API's sandbox object as of the
 * last response; {@link Sandbox.refresh} fetches them again.
 *
 * @example
 * ```ts
 * import { Sandbox } from "sandpit";
 *
 * const sandbox = await Sandbox.create({ template: "base", timeoutMs: 60_000 });
 * try {
 *   const result = await sandbox.commands.run("echo hello");
 *   console.log(result.stdout);
 * } finally {
 *   await sandbox.kill();
 * }
 * ```
 */
export class Sandbox {
  /** Runs and inspects commands in this sandbox. */
  readonly commands: Commands;
  /** Reads and writes files in this sandbox. */
  readonly files: Files;
  /** Interactive programs on terminals in this sandbox. */
  readonly terminals: Terminals;
  /** Runs cells in live interpreters (code contexts) of this sandbox. */
  readonly code: Code;
  /** This sandbox's desktop (desktop sandboxes): screenshots, mouse, keyboard, windows, and its live view `desktop.stream`. */
  readonly desktop: Desktop;
  #info: SandboxInfo;
  readonly #client: ApiClient;

  /** @internal Use {@link Sandbox.create}, {@link Sandbox.get} or {@link Sandbox.list}. */
  constructor(info: SandboxInfo, client: ApiClient) {
    this.#info = info;
    this.#client = client;
    this.commands = new Commands(info.id, client);
    this.files = new Files(info.id, client);
    this.terminals = new Terminals(info.id, client);
    this.code = new Code(info.id, client);
    this.desktop = new Desktop(info.id, client);
  }

  /**
   * Creates a sandbox and resolves once it is running. Every field is optional: the `base` template,
   * 1 vCPU, 1 GiB of memory, 4 GiB of disk and a 5 minute timeout by default. Invalid fields throw a
   * {@link ValidationError} naming them.
   *
   * @param params - The sandbox to create; `timeoutMs` is how long it lives before the server destroys it.
   * @param opts - Where the server is and how to reach it.
   * @example
   * ```ts
   * const sandbox = await Sandbox.create({
   *   template: "python",
   *   resources: { vcpus: 2, memoryMb: 2048 },
   *   env: { MODE: "test" },
   *   metadata: { owner: "ci" },
   * });
   * ```
   */
  static async create(params: CreateSandboxRequest = {}, opts?: ConnectionOptions): Promise<Sandbox> {
    const client = new ApiClient(resolveConfig(opts));
    const info = await client.json(sandboxSchema, "/sandboxes", {
      method: "POST",
      json: params,
    });
    return new Sandbox(info, client);
  }

  /**
   * Connects to an existing sandbox by id. Throws {@link SandboxNotFoundError} if there is none.
   *
   * @example
   * ```ts
   * const sandbox = await Sandbox.get("sbx_abcdefghijklmnopqrst");
   * ```
   */
  static async get(id: string, opts?: ConnectionOptions): Promise<Sandbox> {
    const client = new ApiClient(resolveConfig(opts));
    return new Sandbox(await client.json(sandboxSchema, `/sandboxes/${encodeURIComponent(id)}`), client);
  }

  /**
   * Lists the organisation's sandboxes, newest first, without destroyed ones unless asked.
   *
   * @example
   * ```ts
   * const mine = await Sandbox.list({ status: "running", metadata: { owner: "ci" } });
   * ```
   */
  static async list(filter: SandboxFilter = {}, opts?: ConnectionOptions): Promise<Sandbox[]> {
    const client = new ApiClient(resolveConfig(opts));
    const query: Record<string, string | number | undefined> = {
      status: Array.isArray(filter.status) ? filter.status.join(",") : filter.status,
      includeDestroyed: filter.includeDestroyed === true ? "true" : undefined,
      limit: filter.limit,
    };
    for (const [key, value] of Object.entries(filter.metadata ?? {})) query[`metadata.${key}`] = value;
    const { sandboxes } = await client.json(listSandboxesResponseSchema, "/sandboxes", { query });
    return sandboxes.map((info) => new Sandbox(info, client));
  }

  /**
   * Destroys a sandbox by id without fetching it first. Killing a sandbox twice succeeds.
   *
   * @example
   * ```ts
   * await Sandbox.kill("sbx_abcdefghijklmnopqrst");
   * ```
   */
  static async kill(id: string, opts?: ConnectionOptions): Promise<void> {
    await new ApiClient(resolveConfig(opts)).empty(`/sandboxes/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** The sandbox's id (`sbx_` and 20 base32 characters). */
  get id(): string {
    return this.#info.id;
  }
  /** Lifecycle status as of the last response. */
  get status(): SandboxStatus {
    return this.#info.status;
  }
  /** Why the sandbox is in `error` (`oom`, `crashed`, ...) or was destroyed, else null. */
  get reason(): string | null {
    return this.#info.reason;
  }
  /** Name of the template the sandbox started from. */
  get template(): string {
    return this.#info.template;
  }
  /** vCPUs, memory and disk the sandbox has. */
  get resources(): SandboxInfo["resources"] {
    return this.#info.resources;
  }
  /** Names of the sandbox's environment variables (values are never returned). */
  get envKeys(): string[] {
    return this.#info.envKeys;
  }
  /** Metadata given at creation. */
  get metadata(): Record<string, string> {
    return this.#info.metadata;
  }
  /** Default working directory of commands. */
  get cwd(): string {
    return this.#info.cwd;
  }
  /** When the sandbox was created (RFC 3339). */
  get createdAt(): string {
    return this.#info.createdAt;
  }
  /** When the sandbox started running (RFC 3339), if it did. */
  get startedAt(): string | null {
    return this.#info.startedAt;
  }
  /** When the server will destroy the sandbox (RFC 3339) unless its timeout is extended. */
  get expiresAt(): string | null {
    return this.#info.expiresAt;
  }
  /** When the sandbox was destroyed (RFC 3339), if it was. */
  get destroyedAt(): string | null {
    return this.#info.destroyedAt;
  }

  /**
   * The sandbox's properties as a plain object, the API's shape (also what `JSON.stringify` prints).
   *
   * @example
   * ```ts
   * console.log(JSON.stringify(sandbox, null, 2));
   * ```
   */
  toJSON(): SandboxInfo {
    return { ...this.#info };
  }

  /**
   * Fetches the sandbox's properties again and returns this sandbox.
   *
   * @example
   * ```ts
   * if ((await sandbox.refresh()).status === "error") console.log(sandbox.reason);
   * ```
   */
  async refresh(): Promise<this> {
    this.#info = await this.#client.json(sandboxSchema, this.#path());
    return this;
  }

  /**
   * Sets the sandbox to be destroyed `timeoutMs` milliseconds from now (between 1 s and 24 h),
   * replacing the previous expiry.
   *
   * @example
   * ```ts
   * await sandbox.setTimeout(10 * 60_000);
   * console.log(sandbox.expiresAt);
   * ```
   */
  async setTimeout(timeoutMs: number): Promise<void> {
    this.#info = await this.#client.json(sandboxSchema, `${this.#path()}/timeout`, {
      method: "POST",
      json: { timeoutMs },
    });
  }

  /**
   * Changes the sandbox's metadata: a string sets the key, `null` removes it, keys left out stay.
   * Returns the updated sandbox (also what {@link Sandbox.toJSON} shows from now on).
   *
   * @example
   * ```ts
   * const info = await sandbox.setMetadata({ stage: "review", draft: null });
   * console.log(info.metadata.stage); // "review"
   * ```
   */
  async setMetadata(patch: MetadataPatch): Promise<SandboxInfo> {
    this.#info = await this.#client.json(sandboxSchema, this.#path(), { method: "PATCH", json: { metadata: patch } });
    return this.toJSON();
  }

  /**
   * Pauses the sandbox: its memory and processes are saved and it stops using CPU and memory.
   *
   * @example
   * ```ts
   * await sandbox.pause();
   * await sandbox.resume(); // processes continue where they were
   * ```
   */
  async pause(): Promise<void> {
    this.#info = await this.#client.json(sandboxSchema, `${this.#path()}/pause`, { method: "POST" });
  }

  /**
   * Resumes a paused sandbox with its processes and memory as they were. (`POST .../wake` is the same
   * route under another name.)
   */
  async resume(): Promise<void> {
    this.#info = await this.#client.json(sandboxSchema, `${this.#path()}/resume`, { method: "POST" });
  }

  /**
   * Snapshots the sandbox with its memory and processes; the sandbox keeps running. Start sandboxes
   * from it with `Sandbox.create({ snapshotId: snapshot.id })`.
   *
   * @example
   * ```ts
   * const snapshot = await sandbox.snapshot({ name: "deps-installed" });
   * ```
   */
  async snapshot(opts: { name?: string } = {}): Promise<Snapshot> {
    return this.#client.json(snapshotSchema, `${this.#path()}/snapshots`, { method: "POST", json: opts });
  }

  /**
   * Starts `count` (1–16) new running sandboxes that continue this one, processes and memory included.
   *
   * @example
   * ```ts
   * const [a, b] = await sandbox.fork(2);
   * ```
   */
  async fork(count = 1): Promise<Sandbox[]> {
    const { sandboxes } = await this.#client.json(listSandboxesResponseSchema, `${this.#path()}/fork`, {
      method: "POST",
      json: { count },
    });
    return sandboxes.map((info) => new Sandbox(info, this.#client));
  }

  /**
   * The sandbox's exposed ports and their URLs (by path on the API host, and by host name when the
   * server has a domain).
   *
   * @example
   * ```ts
   * const { ports } = await sandbox.ports();
   * console.log(ports.find((p) => p.port === 8000)?.url);
   * ```
   */
  async ports(): Promise<SandboxPorts> {
    return this.#client.json(listPortsResponseSchema, `${this.#path()}/ports`);
  }

  /**
   * Replaces the sandbox's egress policy, applied at once. Returns the updated sandbox.
   *
   * @example
   * ```ts
   * await sandbox.setNetworkPolicy({ mode: "custom", allow: { domains: ["pypi.org", "*.pythonhosted.org"] } });
   * ```
   */
  async setNetworkPolicy(policy: NetworkPolicyInput): Promise<SandboxInfo> {
    this.#info = await this.#client.json(sandboxSchema, `${this.#path()}/network-policy`, {
      method: "PUT",
      json: policy,
    });
    return this.toJSON();
  }

  /**
   * The sandbox's outbound connection attempts, oldest first: destination, domain, allowed or denied
   * and by which rule.
   *
   * @example
   * ```ts
   * const denied = await sandbox.egressLog({ decision: "denied" });
   * ```
   */
  async egressLog(filter: EgressLogFilter = {}): Promise<EgressLogEntry[]> {
    return listEgressLog(this.#client, `${this.#path()}/egress-log`, filter);
  }

  /**
   * The sandbox's outbound connection attempts as they happen (the ones already logged first), as an
   * async iterator; ends when `signal` aborts.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * for await (const entry of sandbox.followEgressLog({ signal: stop.signal })) console.log(entry.domain);
   * ```
   */
  followEgressLog(options: EgressLogFollowOptions = {}): AsyncGenerator<EgressLogEntry, void, undefined> {
    return followEgressLog(this.#client, `${this.#path()}/egress-log`, options);
  }

  /**
   * The sandbox's resource use over the last 10 minutes, one sample per interval while it runs (oldest
   * first): CPU as a percent of its vCPUs, memory, disk and network bytes, and its process count. A new
   * sandbox has its first sample one interval after it started.
   *
   * @param opts - `since`: only samples taken after this time.
   * @example
   * ```ts
   * const { samples } = await sandbox.metrics();
   * const latest = samples.at(-1);
   * if (latest) console.log(`${latest.cpuPercent}% CPU, ${latest.memoryBytes} bytes of memory`);
   * ```
   */
  async metrics(opts: { since?: Date | string } = {}): Promise<SandboxMetrics> {
    const since = opts.since instanceof Date ? opts.since.toISOString() : opts.since;
    return this.#client.json(sandboxMetricsSchema, `${this.#path()}/metrics`, { query: { since } });
  }

  /**
   * Destroys the sandbox. Killing a sandbox twice succeeds.
   *
   * @example
   * ```ts
   * await sandbox.kill();
   * ```
   */
  async kill(): Promise<void> {
    await this.#client.empty(this.#path(), { method: "DELETE" });
  }

  #path(): string {
    return `/sandboxes/${encodeURIComponent(this.#info.id)}`;
  }
}
