import readline from "node:readline";
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
  emptyCodeExecution,
  gatherCodeEvent,
  type RunCodeRequest,
  runCodeRequestSchema,
} from "@sandpit/contract";
import { z } from "zod";
import type { OrgRecord } from "../domain/index.js";
import { ApiError, validationError } from "../errors.js";
import { CODE_SERVER_DIR } from "../runtime/gvisor-runtime.js";
import type { ExecService } from "./exec-service.js";
import { HelperServer, ownOrg } from "./helper-server.js";
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
  private readonly server: HelperServer;

  constructor(
    private readonly sandboxes: SandboxService,
    exec: ExecService,
    /** The languages whose default context a template's sandboxes start warm (see TemplateService). */
    private readonly warmContextsOf: (template: string) => CodeLanguage[] = () => [],
  ) {
    this.server = new HelperServer(
      {
        name: "code server",
        port: CODE_SERVER_PORT,
        tokenLabel: "sandpit-code-server",
        script: `${CODE_SERVER_DIR}/server.py`,
        readyTimeoutMs: CODE_SERVER_READY_TIMEOUT_MS,
        unavailable: (reason) =>
          new ApiError(
            "language_unavailable",
            `this sandbox cannot run code contexts: ${reason} (the code-interpreter template has everything)`,
          ),
        env: (record, listen, token) => ({
          SANDPIT_CODE_LISTEN: listen,
          SANDPIT_CODE_TOKEN: token,
          // Whatever request starts it, the template's warm contexts come with it.
          SANDPIT_CODE_WARM: this.warmContextsOf(record.template).join(","),
        }),
      },
      sandboxes,
      exec,
    );
  }

  async createContext(org: OrgRecord, sandboxId: string, body: CreateCodeContextRequest): Promise<CodeContext> {
    const parsed = createCodeContextRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    return codeContextSchema.parse(await this.server.call(org, sandboxId, "POST", "/contexts", parsed.data));
  }

  async listContexts(org: OrgRecord, sandboxId: string): Promise<CodeContext[]> {
    const answer = await this.server.call(org, sandboxId, "GET", "/contexts");
    return z.object({ contexts: z.array(codeContextSchema) }).parse(answer).contexts;
  }

  async restartContext(org: OrgRecord, sandboxId: string, contextId: string): Promise<CodeContext> {
    const path = `/contexts/${encodeURIComponent(contextId)}/restart`;
    return codeContextSchema.parse(await this.server.call(org, sandboxId, "POST", path));
  }

  async deleteContext(org: OrgRecord, sandboxId: string, contextId: string): Promise<void> {
    await this.server.call(org, sandboxId, "DELETE", `/contexts/${encodeURIComponent(contextId)}`);
  }

  /**
   * Starts a cell; resolves once it runs (errors up front — no such context, no interpreter — reject).
   * Aborting `signal` (the client went away) interrupts the cell; the context keeps its state.
   */
  async run(org: OrgRecord, sandboxId: string, body: RunCodeRequest, signal?: AbortSignal): Promise<RunningCell> {
    const parsed = runCodeRequestSchema.safeParse(body);
    if (!parsed.success) throw validationError(parsed.error);
    const request = { ...parsed.data, timeoutMs: parsed.data.timeoutMs ?? DEFAULT_CELL_TIMEOUT_MS };
    const res = await this.server.open(org, sandboxId, "POST", "/execute", request, signal);
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

  /**
   * Starts a new sandbox's code server when its template has warm contexts: their interpreters start
   * while the client gets ready for its first cell.
   */
  async warmUp(sandboxId: string): Promise<void> {
    const record = await this.sandboxes.getUnscoped(sandboxId);
    // A pool's sandbox gets its user's env when it is checked out: its interpreters start then.
    if (record?.status !== "running" || record.metadata[POOL_TAG] !== undefined) return;
    if (this.warmContextsOf(record.template).length > 0) await this.server.ensure(ownOrg(record), record);
  }
}
