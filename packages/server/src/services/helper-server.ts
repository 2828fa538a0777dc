import { createHmac } from "node:crypto";
import http from "node:http";
import { text } from "node:stream/consumers";
import { type ErrorCode, errorCodes } from "@sandpit/contract";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import type { ExecService } from "./exec-service.js";
import type { SandboxService } from "./sandbox-service.js";

const READY_POLL_MS = 100;

/** What tells one in-sandbox helper server (code, desktop) from another. */
export interface HelperServerSpec {
  /** How messages name it: "code server". */
  name: string;
  /** The port it listens on at the sandbox's address. */
  port: number;
  /** The label its bearer token is derived under (HMAC of the agent token): each helper its own token. */
  tokenLabel: string;
  /** Its entry point inside the sandbox (shipped in the agent's read-only layer). */
  script: string;
  readyTimeoutMs: number;
  /** Why it cannot run here, as the error the API answers (python3 missing, or the sandbox is too old). */
  unavailable(reason: string): ApiError;
  /** Throws when this sandbox is not one the helper serves (checked before it is started). */
  admit?(record: SandboxRecord): void;
  /** Whom it runs as (default: the sandbox's user, else root). */
  user?(record: SandboxRecord): string;
  /** Its environment: where to listen and its token, plus what the helper needs for this sandbox. */
  env(record: SandboxRecord, listen: string, token: string): Record<string, string>;
}

/**
 * One in-sandbox helper server of each sandbox (packages/agent/<helper>): started on first use as a
 * background command of the sandbox's user, health-checked, started again when it went away; requests
 * carry its derived bearer token and its error envelope becomes the API's.
 */
export class HelperServer {
  private readonly starting = new Map<string, Promise<void>>();
  /** Sandboxes whose server answered (it lives as long as the sandbox's processes do). */
  private readonly serving = new Set<string>();
  // A connection per request: a kept-alive one would outlive a pause of the sandbox, and a connection restored
  // with the sandbox's memory is not one to trust (it costs a connect on the sandbox's own link, ~1 ms).
  private readonly agent = new http.Agent({ keepAlive: false, noDelay: true });

  constructor(
    private readonly spec: HelperServerSpec,
    private readonly sandboxes: SandboxService,
    private readonly exec: ExecService,
  ) {}

  /** A JSON request; its answer parsed (undefined when empty). */
  async call(org: OrgRecord, sandboxId: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const answer = await text(await this.open(org, sandboxId, method, path, body));
    return answer === "" ? undefined : (JSON.parse(answer) as unknown);
  }

  /** Sends a request to the sandbox's server (started first when it is not running) and checks its status. */
  async open(
    org: OrgRecord,
    sandboxId: string,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const record = await this.sandboxes.requireUsable(org, sandboxId);
    this.spec.admit?.(record);
    // A server that answered once is not asked again before each request: a request is one round trip.
    if (!this.serving.has(record.id)) await this.ensure(org, record);
    let res: http.IncomingMessage;
    try {
      res = await this.send(record, method, path, body, signal);
    } catch (e) {
      // Nothing listens: it went away (killed inside the sandbox). Start it again; nothing ran.
      if ((e as NodeJS.ErrnoException).code !== "ECONNREFUSED" || signal?.aborted) throw e;
      this.serving.delete(record.id);
      await this.ensure(org, record);
      res = await this.send(record, method, path, body, signal);
    }
    if (res.statusCode !== undefined && res.statusCode >= 400) throw await this.failure(res);
    return res;
  }

  /** Starts the sandbox's server unless it answers; concurrent first requests start it once. */
  async ensure(org: OrgRecord, record: SandboxRecord): Promise<void> {
    if ((await this.health(record)) !== "up") {
      let starting = this.starting.get(record.id);
      if (!starting) {
        starting = this.start(org, record).finally(() => this.starting.delete(record.id));
        this.starting.set(record.id, starting);
      }
      await starting;
    }
    if (this.serving.size > 100_000) this.serving.clear();
    this.serving.add(record.id);
  }

  private send(
    record: SandboxRecord,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return this.sandboxes.portAddress(record, this.spec.port).then(
      ({ host, port }) =>
        new Promise((resolve, reject) => {
          const req = http.request(
            {
              host,
              port,
              method,
              path,
              agent: this.agent,
              headers: {
                authorization: `Bearer ${this.token(record)}`,
                ...(payload !== undefined ? { "content-type": "application/json" } : {}),
              },
              ...(signal ? { signal } : {}),
            },
            resolve,
          );
          req.on("error", reject);
          req.end(payload);
        }),
    );
  }

  /** The server's error answer (the API's envelope) as an ApiError. */
  private async failure(res: http.IncomingMessage): Promise<ApiError> {
    const answer = await text(res);
    let json: unknown;
    try {
      json = JSON.parse(answer || "{}");
    } catch {
      json = undefined;
    }
    const parsed = z
      .object({
        error: z.object({
          code: z.string(),
          message: z.string(),
          details: z.record(z.string(), z.unknown()).optional(),
        }),
      })
      .safeParse(json);
    if (!parsed.success)
      return new ApiError("upstream_unavailable", `the sandbox's ${this.spec.name} answered ${res.statusCode}`);
    const { code, message, details } = parsed.data.error;
    const known = (errorCodes as string[]).includes(code) ? (code as ErrorCode) : "internal";
    return new ApiError(known, message, details);
  }

  /**
   * `up`; `starting` when it answers but is not ready (503: the desktop's display is still coming up),
   * so that it is waited for, not started a second time; `down` when nothing answers.
   */
  private async health(record: SandboxRecord): Promise<"up" | "starting" | "down"> {
    try {
      const res = await this.send(record, "GET", "/health", undefined, AbortSignal.timeout(2_000));
      res.resume();
      if (res.statusCode === 200) return "up";
      return res.statusCode === 503 ? "starting" : "down";
    } catch {
      return "down";
    }
  }

  private async start(org: OrgRecord, record: SandboxRecord): Promise<void> {
    const state = await this.health(record);
    if (state === "up") return;
    if (state === "starting") return this.waitUntilUp(record);
    const check = await this.exec.run(org, record.id, {
      command: `command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }; test -f ${this.spec.script} || { echo "it started before its ${this.spec.name} existed" >&2; exit 1; }`,
    });
    if (check.exitCode !== 0) throw this.spec.unavailable(check.stderr.trim() || `exit ${check.exitCode}`);
    // A background command of the sandbox's user: it shows in the sandbox's command list like the others.
    await this.exec.startBackground(org, record.id, {
      args: ["python3", this.spec.script],
      env: this.spec.env(record, `0.0.0.0:${this.spec.port}`, this.token(record)),
      ...(this.spec.user ? { user: this.spec.user(record) } : {}),
    });
    await this.waitUntilUp(record);
  }

  private async waitUntilUp(record: SandboxRecord): Promise<void> {
    const deadline = Date.now() + this.spec.readyTimeoutMs;
    while (Date.now() < deadline) {
      if ((await this.health(record)) === "up") return;
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    throw new ApiError("sandbox_failed", `the sandbox's ${this.spec.name} did not start (see its command's output)`);
  }

  /** Its bearer token, derived from the sandbox's agent token: nothing more to store. */
  private token(record: SandboxRecord): string {
    return createHmac("sha256", record.agentToken).update(this.spec.tokenLabel).digest("hex");
  }
}

/** The organisation that owns a sandbox, for work the server does on its behalf. */
export function ownOrg(record: SandboxRecord): OrgRecord {
  return { id: record.orgId, name: "", createdAt: 0 };
}
