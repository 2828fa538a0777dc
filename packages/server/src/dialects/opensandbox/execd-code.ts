import { type CodeEvent, type CodeLanguage, codeLanguageSchema, codeLanguages } from "@sandpit/contract";
import { ApiError } from "../../errors.js";
import type { AppServices } from "../../services/index.js";
import type { ExecdCommands, ExecdEvent } from "./execd-commands.js";
import { resolvePath, type SandboxAccess } from "./execd-session.js";
import type { ExecdRunCode, RunInSession } from "./schemas.js";

/** Languages OpenSandbox's execd runs that Sandpit's code contexts do not. */
const OTHER_EXECD_LANGUAGES = ["java", "typescript", "go", "sql"];

/** execd's stream events of a cell: its command events plus the cell's count and rich results. */
export type ExecdCodeEvent =
  | ExecdEvent
  | { type: "execution_count"; execution_count: number; timestamp: number }
  | { type: "result"; results: Record<string, unknown>; timestamp: number };

/** An execd context as its API shows it. */
export interface ExecdContext {
  id: string;
  language: string;
}

/**
 * A language as OpenSandbox names it, checked against the languages of Sandpit's code contexts: one
 * OpenSandbox runs and Sandpit does not is refused as unavailable, naming it; anything else is a bad field.
 */
export function codeLanguageOf(language: string): CodeLanguage {
  const parsed = codeLanguageSchema.safeParse(language);
  if (parsed.success) return parsed.data;
  const available = codeLanguages.join(", ");
  if (OTHER_EXECD_LANGUAGES.includes(language)) {
    throw new ApiError(
      "language_unavailable",
      `language "${language}" is not available in Sandpit's code contexts; they run ${available}`,
      { field: "language" },
    );
  }
  throw new ApiError("bad_request", `language: "${language}" is not a language; use one of ${available}`, {
    field: "language",
  });
}

/** What a running cell is for: an execd code cell, or a command in a bash session. */
export type CellKind = "code" | "session";

/** The exit status of a bash cell whose last command failed: the code server's `ExitCode` error, `exit status 3`. */
export function exitCodeOf(error: { name: string; value: string }): number | undefined {
  if (error.name !== "ExitCode") return undefined;
  const match = /(-?\d+)\s*$/.exec(error.value);
  return match ? Number(match[1]) : undefined;
}

/**
 * Sandpit's cell events as execd's: `init` naming the context (the id `DELETE /code` takes), output,
 * rich results as MIME bundles, errors with their traceback as lines, then the execution count and
 * `execution_complete`. A bash session's failed command is execd's `CommandExecError` whose value is the
 * exit status, with no `execution_complete` after it (that is how OpenSandbox's SDKs read exit codes).
 * When `interrupted()` says the cell was interrupted on purpose, the end of its stream is a
 * `KeyboardInterrupt` error, as a Jupyter kernel reports an interrupt.
 */
export async function* execdCodeEventsOf(
  contextId: string,
  events: AsyncIterable<CodeEvent>,
  kind: CellKind,
  interrupted: () => boolean = () => false,
): AsyncGenerator<ExecdCodeEvent> {
  yield { type: "init", text: contextId, timestamp: Date.now() };
  try {
    for await (const e of events) {
      const timestamp = Date.now();
      if (e.type === "stdout" || e.type === "stderr") {
        if (e.text) yield { type: e.type, text: e.text, timestamp };
      } else if (e.type === "result") {
        yield { type: "result", results: e.data, timestamp };
      } else if (e.type === "error") {
        const code = kind === "session" ? exitCodeOf(e) : undefined;
        const error =
          code === undefined
            ? { ename: e.name, evalue: e.value, traceback: e.traceback === "" ? [] : e.traceback.split("\n") }
            : { ename: "CommandExecError", evalue: String(code), traceback: [`command exited with code ${code}`] };
        yield { type: "error", error, timestamp };
      } else {
        if (kind === "code" && e.executionCount !== null) {
          yield { type: "execution_count", execution_count: e.executionCount, timestamp };
        }
        const completes = e.status === "ok" || (kind === "code" && e.status === "error");
        if (completes) yield { type: "execution_complete", execution_time: Math.round(e.durationMs), timestamp };
      }
    }
  } catch (e) {
    if (!interrupted()) throw e;
    yield {
      type: "error",
      error: { ename: "KeyboardInterrupt", evalue: "interrupted", traceback: ["KeyboardInterrupt: interrupted"] },
      timestamp: Date.now(),
    };
  }
}

/** Sandpit's code contexts as execd's `/code` contexts and `/session` bash sessions. */
export class ExecdCode {
  /** The cells running now, by sandbox and context: `DELETE /code?id=` aborts them. */
  private readonly running = new Map<string, Set<AbortController>>();

  constructor(
    private readonly services: Pick<AppServices, "code">,
    private readonly commands: ExecdCommands,
  ) {}

  async createContext(access: SandboxAccess, body: { language: string; cwd?: string | undefined }) {
    const language = codeLanguageOf(body.language);
    const context = await this.services.code.createContext(access.org, access.record.id, {
      language,
      ...(body.cwd ? { cwd: resolvePath(access.record, body.cwd) } : {}),
    });
    return { id: context.id, language: context.language, ...(body.cwd ? { cwd: context.cwd } : {}) };
  }

  async listContexts(access: SandboxAccess, language?: string): Promise<ExecdContext[]> {
    const contexts = await this.services.code.listContexts(access.org, access.record.id);
    return contexts
      .filter((c) => language === undefined || c.language === language)
      .map((c) => ({ id: c.id, language: c.language }));
  }

  async getContext(access: SandboxAccess, contextId: string): Promise<ExecdContext> {
    const context = (await this.listContexts(access)).find((c) => c.id === contextId);
    if (!context) throw new ApiError("code_context_not_found", `context ${contextId} not found`);
    return context;
  }

  async deleteContext(access: SandboxAccess, contextId: string): Promise<void> {
    await this.services.code.deleteContext(access.org, access.record.id, contextId);
  }

  async deleteContexts(access: SandboxAccess, language: string): Promise<void> {
    for (const context of await this.listContexts(access, language)) {
      await this.deleteContext(access, context.id);
    }
  }

  /**
   * A cell's events (`POST /code`): in the context the request names, or in its language's default
   * context; without a language, the code is a stateless shell command, as execd runs it.
   */
  async run(access: SandboxAccess, body: ExecdRunCode, signal: AbortSignal): Promise<AsyncIterable<ExecdCodeEvent>> {
    const id = body.context?.id;
    const language = body.context?.language;
    if (!id && !language) return this.commands.run(access, { command: body.code }, signal);
    const request = id ? { code: body.code, contextId: id } : { code: body.code, language: codeLanguageOf(language!) };
    return this.start(access, request, "code", signal);
  }

  /** `POST /session`: a bash session is a bash code context. */
  async createSession(access: SandboxAccess, cwd: string | undefined): Promise<{ session_id: string }> {
    const context = await this.createContext(access, { language: "bash", ...(cwd ? { cwd } : {}) });
    return { session_id: context.id };
  }

  /**
   * `POST /session/{id}/run`: the command runs in the session's shell, so `cd` and variables persist; a
   * `cwd` is changed to first (and stays, as in execd, where the session keeps its last directory).
   */
  async runInSession(
    access: SandboxAccess,
    sessionId: string,
    body: RunInSession,
    signal: AbortSignal,
  ): Promise<AsyncIterable<ExecdCodeEvent>> {
    await this.session(access, sessionId);
    const code = body.cwd ? `cd -- ${shellQuote(resolvePath(access.record, body.cwd))}\n${body.command}` : body.command;
    const request = { code, contextId: sessionId, ...(body.timeout ? { timeoutMs: body.timeout } : {}) };
    return this.start(access, request, "session", signal);
  }

  async deleteSession(access: SandboxAccess, sessionId: string): Promise<void> {
    await this.session(access, sessionId);
    await this.deleteContext(access, sessionId);
  }

  /**
   * `DELETE /code?id=`: interrupts the cells running in that context (their contexts keep their state).
   * An idle context has nothing to interrupt; any other id is a stateless command's, as in execd.
   */
  async interrupt(access: SandboxAccess, id: string): Promise<void> {
    const cells = this.running.get(runningKey(access, id));
    if (cells) {
      for (const cell of cells) cell.abort();
      return;
    }
    if ((await this.listContexts(access)).some((c) => c.id === id)) return;
    await this.commands.interrupt(access, id);
  }

  /** A bash session by id: other contexts are not sessions. */
  private async session(access: SandboxAccess, sessionId: string): Promise<void> {
    const context = (await this.listContexts(access)).find((c) => c.id === sessionId);
    if (context?.language !== "bash") throw new ApiError("code_context_not_found", `session ${sessionId} not found`);
  }

  /** Starts a cell (errors up front reject) and tracks it until its events end. */
  private async start(
    access: SandboxAccess,
    request: { code: string; contextId?: string; language?: CodeLanguage; timeoutMs?: number },
    kind: CellKind,
    signal: AbortSignal,
  ): Promise<AsyncIterable<ExecdCodeEvent>> {
    const abort = new AbortController();
    let interrupted = false;
    const onClientGone = () => abort.abort();
    signal.addEventListener("abort", onClientGone, { once: true });
    const interrupt = new AbortController();
    interrupt.signal.addEventListener("abort", () => {
      interrupted = true;
      abort.abort();
    });
    let key: string | undefined;
    const untrack = () => {
      signal.removeEventListener("abort", onClientGone);
      if (!key) return;
      const cells = this.running.get(key);
      cells?.delete(interrupt);
      if (cells?.size === 0) this.running.delete(key);
    };
    const track = (contextId: string) => {
      key = runningKey(access, contextId);
      const cells = this.running.get(key) ?? new Set();
      cells.add(interrupt);
      this.running.set(key, cells);
    };
    try {
      const cell = await this.services.code.run(access.org, access.record.id, request, abort.signal);
      track(cell.contextId);
      return (async function* () {
        try {
          yield* execdCodeEventsOf(cell.contextId, cell.events, kind, () => interrupted);
        } finally {
          untrack();
        }
      })();
    } catch (e) {
      untrack();
      throw e;
    }
  }
}

/** A word for bash, whatever it holds. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function runningKey(access: SandboxAccess, contextId: string): string {
  return `${access.record.id}/${contextId}`;
}
