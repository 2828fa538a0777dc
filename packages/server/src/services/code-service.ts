import { createHmac } from "node:crypto";
import http from "node:http";
import readline from "node:readline";
import { text } from "node:stream/consumers";
import {
  type CodeContext,
  type CodeEvent,
  type CodeExecution,
  type CodeLanguage,
  type CreateCodeContextRequest,
  codeContextSchema,
  codeEventSchema,
  createCodeContextRequestSchema,
  DEFAULT_CELL_TIMEOUT_MS,
  type ErrorCode,
  emptyCodeExecution,
  errorCodes,
  gatherCodeEvent,
  type RunCodeRequest,
  runCodeRequestSchema,
} from "@sandpit/contract";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../domain/index.js";
import { ApiError, validationError } from "../errors.js";
import { CODE_SERVER_DIR } from "../runtime/gvisor-runtime.js";
import type { ExecService } from "./exec-service.js";
import type { SandboxService } from "./sandbox-service.js";
import { POOL_TAG } from "./warm-pool-service.js";

/** Port of the in-sandbox code server (beside the agent's 49982; E2B's 49999 stays free for users). */
export const CODE_SERVER_PORT = 49981;
const CODE_SERVER_READY_TIMEOUT_MS = 15_000;

/** A cell that started: the context it runs in, and its events until `end`. */
export interface RunningCell {
  contextId: string;
  events: AsyncIterable<CodeEvent>;
}

const startEventSchema = z.object({ type: z.literal("start"), contextId: z.string() });

/**
 * Code contexts: live interpreters (Python through a Jupyter kernel, JavaScript, bash) in a sandbox. They
 * are served by the in-sandbox code server (packages/agent/code), which the first code request starts as
 * the sandbox's user; being processes of the sandbox, contexts keep their state across pause, resume,
 * snapshots and forks, and their memory counts in the sandbox's limit. The server keeps nothing about them.
 */
export class CodeService {
  private readonly starting = new Map<string, Promise<void>>();
  /** Sandboxes whose code server answered (it lives as long as the sandbox's processes do). */
  private readonly serving = new Set<string>();
  // A connection per request: a kept-alive one would outlive a pause of the sandbox, and a connection restored
  // with the sandbox's memory is not one to trust (it costs a connect on the sandbox's own link, ~1 ms).
  private readonly agent = new http.Agent({ keepAlive: false, noDelay: true });

  constructor(
    private readonly sandboxes: SandboxService,
    private readonly exec: ExecService,
    /** The languages whose default context a template's sandboxes start warm (see TemplateService). */
    private readonly warmContextsOf: (template: string) => CodeLanguage[] = () => [],
  ) {}

  async createContext(org: OrgRecord, sandboxId: string, body: CreateCodeContextRequest): Promise<CodeContext> {
    const parsed = createCodeContextRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    return codeContextSchema.parse(await this.call(org, sandboxId, "POST", "/contexts", parsed.data));
  }

  async listContexts(org: OrgRecord, sandboxId: string): Promise<CodeContext[]> {
    const answer = await this.call(org, sandboxId, "GET", "/contexts");
    return z.object({ contexts: z.array(codeContextSchema) }).parse(answer).contexts;
  }

  async restartContext(org: OrgRecord, sandboxId: string, contextId: string): Promise<CodeContext> {
    const path = `/contexts/${encodeURIComponent(contextId)}/restart`;
    return codeContextSchema.parse(await this.call(org, sandboxId, "POST", path));
  }

  async deleteContext(org: OrgRecord, sandboxId: string, contextId: string): Promise<void> {
    await this.call(org, sandboxId, "DELETE", `/contexts/${encodeURIComponent(contextId)}`);
  }

  /**
   * Starts a cell; resolves once it runs (errors up front — no such context, no interpreter — reject).
   * Aborting `signal` (the client went away) interrupts the cell; the context keeps its state.
   */
  async run(org: OrgRecord, sandboxId: string, body: RunCodeRequest, signal?: AbortSignal): Promise<RunningCell> {
    const parsed = runCodeRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    const request = { ...parsed.data, timeoutMs: parsed.data.timeoutMs ?? DEFAULT_CELL_TIMEOUT_MS };
    const res = await this.open(org, sandboxId, "POST", "/execute", request, signal);
    const lines = readline.createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
    const iterator = lines[Symbol.asyncIterator]();
    const first = await iterator.next();
    const start = first.done ? undefined : startEventSchema.safeParse(JSON.parse(first.value));
    if (!start?.success) {
      res.destroy();
      throw new ApiError("upstream_unavailable", "the sandbox's code server ended the cell before it started");
    }
    this.sandboxes.touch(sandboxId);
    const touch = () => this.sandboxes.touch(sandboxId);
    async function* events(): AsyncGenerator<CodeEvent> {
      try {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
          if (next.value.trim() === "") continue;
          touch();
          const event = codeEventSchema.parse(JSON.parse(next.value));
          yield event;
          if (event.type === "end") return;
        }
        throw new ApiError("sandbox_failed", "the sandbox's code server went away during the cell");
      } finally {
        res.destroy();
      }
    }
    return { contextId: start.data.contextId, events: events() };
  }

  /** Runs a cell to its end and gathers its events. */
  async runToEnd(
    org: OrgRecord,
    sandboxId: string,
    body: RunCodeRequest,
    signal?: AbortSignal,
  ): Promise<CodeExecution> {
    const cell = await this.run(org, sandboxId, body, signal);
    const execution = emptyCodeExecution(cell.contextId);
    for await (const event of cell.events) gatherCodeEvent(execution, event);
    return execution;
  }

  /** A JSON request to the sandbox's code server; its error answers become the API's. */
  private async call(org: OrgRecord, sandboxId: string, method: string, path: string, body?: unknown) {
    const answer = await text(await this.open(org, sandboxId, method, path, body));
    return answer === "" ? undefined : (JSON.parse(answer) as unknown);
  }

  /** Sends a request to the sandbox's code server (started first when it is not running) and checks its status. */
  private async open(
    org: OrgRecord,
    sandboxId: string,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const record = await this.sandboxes.requireUsable(org, sandboxId);
    // A code server that answered once is not asked again before each cell: a cell is one round trip.
    if (!this.serving.has(record.id)) await this.ensureServer(org, record);
    let res: http.IncomingMessage;
    try {
      res = await this.send(record, method, path, body, signal);
    } catch (e) {
      // Nothing listens: it went away (killed inside the sandbox). Start it again; nothing ran.
      if ((e as NodeJS.ErrnoException).code !== "ECONNREFUSED" || signal?.aborted) throw e;
      this.serving.delete(record.id);
      await this.ensureServer(org, record);
      res = await this.send(record, method, path, body, signal);
    }
    if (res.statusCode !== undefined && res.statusCode >= 400) throw await this.failure(res);
    return res;
  }

  private async send(
    record: SandboxRecord,
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const { host, port } = await this.sandboxes.portAddress(record, CODE_SERVER_PORT);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host,
          port,
          method,
          path,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${codeServerToken(record)}`,
            ...(payload !== undefined ? { "content-type": "application/json" } : {}),
          },
          ...(signal ? { signal } : {}),
        },
        resolve,
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** The code server's error answer (the API's envelope) as an ApiError. */
  private async failure(res: http.IncomingMessage): Promise<ApiError> {
    const answer = await text(res);
    const parsed = z
      .object({
        error: z.object({
          code: z.string(),
          message: z.string(),
          details: z.record(z.string(), z.unknown()).optional(),
        }),
      })
      .safeParse(JSON.parse(answer || "{}"));
    if (!parsed.success)
      return new ApiError("upstream_unavailable", `the sandbox's code server answered ${res.statusCode}`);
    const { code, message, details } = parsed.data.error;
    const known = (errorCodes as string[]).includes(code) ? (code as ErrorCode) : "internal";
    return new ApiError(known, message, details);
  }

  /** Starts the sandbox's code server unless it answers; concurrent first requests start it once. */
  /**
   * Starts a new sandbox's code server when its template has warm contexts: their interpreters start
   * while the client gets ready for its first cell.
   */
  async warmUp(sandboxId: string): Promise<void> {
    const record = await this.sandboxes.getUnscoped(sandboxId);
    // A pool's sandbox gets its user's env when it is checked out: its interpreters start then.
    if (!record || record.status !== "running" || record.metadata[POOL_TAG] !== undefined) return;
    if (this.warmContextsOf(record.template).length > 0) await this.ensureServer(ownOrg(record), record);
  }

  private async ensureServer(org: OrgRecord, record: SandboxRecord): Promise<void> {
    if (!(await this.healthy(record))) {
      let starting = this.starting.get(record.id);
      if (!starting) {
        starting = this.startServer(org, record).finally(() => this.starting.delete(record.id));
        this.starting.set(record.id, starting);
      }
      await starting;
    }
    if (this.serving.size > 100_000) this.serving.clear();
    this.serving.add(record.id);
  }

  private async healthy(record: SandboxRecord): Promise<boolean> {
    try {
      const res = await this.send(record, "GET", "/health", undefined, AbortSignal.timeout(2_000));
      res.resume();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  private async startServer(org: OrgRecord, record: SandboxRecord): Promise<void> {
    if (await this.healthy(record)) return;
    const check = await this.exec.run(org, record.id, {
      command: `command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }; test -f ${CODE_SERVER_DIR}/server.py || { echo "it started before code contexts existed" >&2; exit 1; }`,
    });
    if (check.exitCode !== 0) {
      throw new ApiError(
        "language_unavailable",
        `this sandbox cannot run code contexts: ${check.stderr.trim() || `exit ${check.exitCode}`} (the code-interpreter template has everything)`,
      );
    }
    // A background command of the sandbox's user: it shows in the sandbox's command list like the others.
    await this.exec.startBackground(org, record.id, {
      args: ["python3", `${CODE_SERVER_DIR}/server.py`],
      env: {
        SANDPIT_CODE_LISTEN: `0.0.0.0:${CODE_SERVER_PORT}`,
        SANDPIT_CODE_TOKEN: codeServerToken(record),
        // Whatever request starts it, the template's warm contexts come with it.
        SANDPIT_CODE_WARM: this.warmContextsOf(record.template).join(","),
      },
    });
    const deadline = Date.now() + CODE_SERVER_READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (await this.healthy(record)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new ApiError("sandbox_failed", "the sandbox's code server did not start (see its command's output)");
  }
}

/** The organisation that owns a sandbox, for work the server does on its behalf. */
function ownOrg(record: SandboxRecord): OrgRecord {
  return { id: record.orgId, name: "", createdAt: 0 };
}

/** The bearer token of a sandbox's code server, derived from its agent token: nothing more to store. */
function codeServerToken(record: SandboxRecord): string {
  return createHmac("sha256", record.agentToken).update("sandpit-code-server").digest("hex");
}
