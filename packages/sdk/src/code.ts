import {
  CODE_CONTEXT_HEADER,
  type CodeContext,
  type CodeError,
  type CodeEvent,
  type CodeExecution,
  type CodeLanguage,
  codeContextSchema,
  codeEventSchema,
  emptyCodeExecution,
  gatherCodeEvent,
  type RunCodeRequest,
} from "@sandpit/contract";
import { z } from "zod";
import type { ApiClient } from "./api-client.js";
import { streamEventError } from "./commands.js";
import { NetworkError } from "./errors.js";
import { parseNdjsonEvents } from "./ndjson.js";

export type { CodeContext, CodeError, CodeEvent, CodeExecution, CodeLanguage };

/** One rich result of a cell: a MIME bundle (`text/plain`, `text/html`, `image/png` as base64, ...). */
export type CodeResult = CodeExecution["results"][number];

/** Callbacks that receive a cell's output as it is produced. */
export interface CodeCallbacks {
  /** Called with each piece of text the cell prints. */
  onStdout?: (text: string) => void;
  /** Called with each piece of text the cell writes to stderr. */
  onStderr?: (text: string) => void;
  /** Called with each result: something displayed (a figure) or, last, the cell's value (`isMainResult`). */
  onResult?: (result: CodeResult) => void;
  /** Called when the cell raises (or times out), with the error's name, value and traceback. */
  onError?: (error: CodeError) => void;
}

/** How to run a cell. */
export interface RunCodeOptions extends CodeCallbacks {
  /** Runs in this language's default context (python unless told); excludes `context`. */
  language?: CodeLanguage;
  /** Runs in this context (its id, or the context itself); excludes `language`. */
  context?: string | CodeContext;
  /** Environment variables set for this cell only. */
  env?: Record<string, string>;
  /** Interrupts the cell after this many milliseconds (server default 5 min); the context keeps its state. */
  timeoutMs?: number;
  /** Aborting it interrupts the cell (the context keeps its state) and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** How to start a context. */
export interface CreateCodeContextOptions {
  /** The interpreter's language; python by default. */
  language?: CodeLanguage;
  /** Its working directory; the sandbox user's home by default. */
  cwd?: string;
  /** Environment variables of the interpreter, on top of the sandbox's. */
  env?: Record<string, string>;
}

/** The server's last line when a cell's stream failed after it started (not an error the cell raised). */
const streamFailureSchema = z.object({ type: z.literal("error"), code: z.string(), message: z.string() });
type StreamFailure = z.infer<typeof streamFailureSchema>;
const cellStreamLineSchema = z.union([codeEventSchema, streamFailureSchema]);
type CellStreamLine = z.infer<typeof cellStreamLineSchema>;
const isStreamFailure = (line: CellStreamLine): line is StreamFailure => line.type === "error" && "code" in line;
const contextListSchema = z.object({ contexts: z.array(codeContextSchema) });

/**
 * Runs code in live interpreters (code contexts) of one sandbox; reached as `sandbox.code`. A context keeps
 * its variables between cells; each language has a default context, made by the first cell run in it.
 * Python contexts are Jupyter kernels: a cell's value and its figures come back as rich results.
 *
 * @example
 * ```ts
 * await sandbox.code.run("x = 41");
 * const { results } = await sandbox.code.run("x + 1");
 * console.log(results[0]?.data["text/plain"]); // "42"
 * ```
 */
export class Code {
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal Reached as `sandbox.code`. */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
  }

  /**
   * Runs a cell and resolves with its execution once it ended, feeding the callbacks live. A cell that
   * raises resolves too, with `error` set and `status: "error"` (`"timeout"` past `timeoutMs`); API
   * errors (no such context, no interpreter for the language) reject.
   *
   * @example
   * ```ts
   * const execution = await sandbox.code.run("import matplotlib.pyplot as plt; plt.plot([1, 3, 2]); plt.show()", {
   *   onStdout: (text) => process.stdout.write(text),
   *   onResult: (result) => {
   *     if (typeof result.data["image/png"] === "string") console.log("a chart");
   *   },
   * });
   * if (execution.error) console.error(execution.error.traceback);
   * ```
   */
  async run(code: string, opts: RunCodeOptions = {}): Promise<CodeExecution> {
    const contextId = typeof opts.context === "string" ? opts.context : opts.context?.id;
    const request: RunCodeRequest = {
      code,
      ...(opts.language !== undefined ? { language: opts.language } : {}),
      ...(contextId !== undefined ? { contextId } : {}),
      ...(opts.env !== undefined ? { env: opts.env } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    };
    const response = await this.#client.stream(`${this.#path()}/run`, {
      method: "POST",
      json: request,
      headers: { accept: "application/x-ndjson" },
      signal: opts.signal,
    });
    const events = parseNdjsonEvents(cellStreamLineSchema, response.body, response.requestId);
    return gatherExecution(events, opts, {
      contextId: response.headers.get(CODE_CONTEXT_HEADER) ?? contextId ?? "",
      requestId: response.requestId,
    });
  }

  /**
   * Starts a context: a new interpreter with its own variables, cwd and environment.
   *
   * @example
   * ```ts
   * const js = await sandbox.code.createContext({ language: "javascript", cwd: "/tmp" });
   * await sandbox.code.run("const answer = 42", { context: js });
   * ```
   */
  async createContext(opts: CreateCodeContextOptions = {}): Promise<CodeContext> {
    return this.#client.json(codeContextSchema, `${this.#path()}/contexts`, { method: "POST", json: opts });
  }

  /**
   * Lists the sandbox's contexts, the default ones made so far included.
   *
   * @example
   * ```ts
   * for (const context of await sandbox.code.listContexts()) console.log(context.id, context.language);
   * ```
   */
  async listContexts(): Promise<CodeContext[]> {
    const { contexts } = await this.#client.json(contextListSchema, `${this.#path()}/contexts`);
    return contexts;
  }

  /**
   * Restarts a context's interpreter: its variables are gone; its id, language, cwd and env stay.
   *
   * @example
   * ```ts
   * await sandbox.code.restartContext(context);
   * ```
   */
  async restartContext(context: string | CodeContext): Promise<CodeContext> {
    return this.#client.json(codeContextSchema, `${this.#contextPath(context)}/restart`, { method: "POST" });
  }

  /**
   * Stops a context's interpreter and forgets it. Throws {@link NotFoundError} for an unknown context.
   *
   * @example
   * ```ts
   * await sandbox.code.removeContext(context.id);
   * ```
   */
  async removeContext(context: string | CodeContext): Promise<void> {
    await this.#client.empty(this.#contextPath(context), { method: "DELETE" });
  }

  #path(): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/code`;
  }

  #contextPath(context: string | CodeContext): string {
    return `${this.#path()}/contexts/${encodeURIComponent(typeof context === "string" ? context : context.id)}`;
  }
}

/** Folds a cell's events into its execution, calling the callbacks on the way. */
async function gatherExecution(
  lines: AsyncIterable<CellStreamLine>,
  callbacks: CodeCallbacks,
  context: { contextId: string; requestId: string | undefined },
): Promise<CodeExecution> {
  const execution = emptyCodeExecution(context.contextId);
  let ended = false;
  for await (const line of lines) {
    // The server ends the stream right after `end`: reading to its end lets the connection be reused.
    if (ended) continue;
    if (isStreamFailure(line)) throw streamEventError(line, context.requestId);
    gatherCodeEvent(execution, line);
    switch (line.type) {
      case "stdout":
        callbacks.onStdout?.(line.text);
        break;
      case "stderr":
        callbacks.onStderr?.(line.text);
        break;
      case "result":
        callbacks.onResult?.(execution.results[execution.results.length - 1]!);
        break;
      case "error":
        callbacks.onError?.(execution.error!);
        break;
      case "end":
        ended = true;
        break;
    }
  }
  if (ended) return execution;
  throw new NetworkError("the cell's stream ended before the cell did", {
    code: "network_error",
    requestId: context.requestId,
  });
}
