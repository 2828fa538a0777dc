import {
  backgroundExecResponseSchema,
  type Command,
  commandSchema,
  type ExecRequest,
  type ExecStreamEvent,
  errorStatus,
  execResultSchema,
  execStreamEventSchema,
  type signalNames,
} from "@sandpit/contract";
import { z } from "zod";
import type { ApiClient } from "./api-client.js";
import { createError, isErrorCode, NetworkError, type SandpitError, ServerError } from "./errors.js";
import { parseNdjsonEvents } from "./ndjson.js";

/** What the API says about a command: its argv, status, pid, exit code and times. */
export type CommandInfo = Command;

/** A signal to send to a command, by name or number. */
export type Signal = (typeof signalNames)[number] | number;

/** The outcome of a command that has exited. */
export interface CommandResult {
  /** Id of the command, for `sandbox.commands.get()` and the logs endpoint. */
  commandId: string;
  /** The command's exit code; 128 + n when signal n killed it. */
  exitCode: number;
  /** Everything the command wrote to stdout (up to the server's output cap). */
  stdout: string;
  /** Everything the command wrote to stderr (up to the server's output cap). */
  stderr: string;
  /** Wall time from start to exit, in milliseconds. */
  durationMs: number;
  /** Whether the server killed the command because it ran past its `timeoutMs`. */
  timedOut: boolean;
  /** Whether output went over the server's cap and the rest was dropped. */
  truncated: boolean;
}

/** Callbacks that receive a command's output as it is produced. */
export interface OutputCallbacks {
  /** Called with each chunk the command writes to stdout. */
  onStdout?: (data: string) => void;
  /** Called with each chunk the command writes to stderr. */
  onStderr?: (data: string) => void;
}

/** How to run a command. */
export interface RunOptions extends OutputCallbacks {
  /** Working directory; the sandbox's `cwd` by default. */
  cwd?: string;
  /** Environment variables added to the sandbox's own. */
  env?: Record<string, string>;
  /** Kill the command after this many milliseconds; the result then has `timedOut: true`. */
  timeoutMs?: number;
  /** Text written to the command's stdin, which is then closed. */
  stdin?: string;
  /** Return a {@link CommandHandle} as soon as the command started instead of waiting for it to exit. */
  background?: boolean;
  /** Background only: keep stdin open after `stdin`, for {@link CommandHandle.sendStdin}. */
  stdinOpen?: boolean;
}

const commandListSchema = z.object({ commands: z.array(commandSchema) });

/**
 * Runs and inspects commands in one sandbox; reached as `sandbox.commands`.
 *
 * @example
 * ```ts
 * const result = await sandbox.commands.run("ls -la /", { onStdout: (data) => process.stdout.write(data) });
 * console.log(result.exitCode);
 * ```
 */
export class Commands {
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal Reached as `sandbox.commands`. */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
  }

  /**
   * Runs a command: a string runs through `/bin/sh -c`, an array runs as argv without a shell.
   * In the foreground it resolves when the command exits, whatever its exit code, feeding
   * `onStdout`/`onStderr` live; with `background: true` it resolves with a {@link CommandHandle}
   * as soon as the command started.
   *
   * @example
   * ```ts
   * const { stdout } = await sandbox.commands.run(["python3", "-c", "print(6 * 7)"]);
   * const server = await sandbox.commands.run("python3 -m http.server 8000", { background: true });
   * await server.kill();
   * ```
   */
  run(cmd: string | string[], opts: RunOptions & { background: true }): Promise<CommandHandle>;
  run(cmd: string | string[], opts?: RunOptions & { background?: false }): Promise<CommandResult>;
  run(cmd: string | string[], opts?: RunOptions): Promise<CommandResult | CommandHandle>;
  async run(cmd: string | string[], opts: RunOptions = {}): Promise<CommandResult | CommandHandle> {
    const request: ExecRequest = {
      ...(typeof cmd === "string" ? { command: cmd } : { args: cmd }),
      cwd: opts.cwd,
      env: opts.env,
      timeoutMs: opts.timeoutMs,
      stdin: opts.stdin,
      background: opts.background === true,
      ...(opts.stdinOpen ? { stdinOpen: true } : {}),
    };
    const path = `/sandboxes/${encodeURIComponent(this.#sandboxId)}/exec`;
    if (opts.background === true) {
      const started = await this.#client.json(backgroundExecResponseSchema, path, { method: "POST", json: request });
      return new CommandHandle(this.#sandboxId, started.commandId, started.pid, this.#client, opts);
    }
    const response = await this.#client.stream(path, {
      method: "POST",
      json: request,
      headers: { accept: "application/x-ndjson" },
    });
    if (response.headers.get("content-type")?.includes("application/json")) {
      return resultFromJson(response.body, response.requestId, opts);
    }
    return collectOutput(parseNdjsonEvents(execStreamEventSchema, response.body, response.requestId), opts, {
      requestId: response.requestId,
    });
  }

  /**
   * Fetches what the API knows about one command.
   *
   * @example
   * ```ts
   * const info = await sandbox.commands.get(result.commandId);
   * console.log(info.status, info.exitCode);
   * ```
   */
  async get(commandId: string): Promise<CommandInfo> {
    return this.#client.json(commandSchema, `${this.#commandsPath()}/${encodeURIComponent(commandId)}`);
  }

  /**
   * Lists the commands started in the sandbox, running and finished.
   *
   * @example
   * ```ts
   * const running = (await sandbox.commands.list()).filter((c) => c.status === "running");
   * ```
   */
  async list(): Promise<CommandInfo[]> {
    const { commands } = await this.#client.json(commandListSchema, this.#commandsPath());
    return commands;
  }

  /**
   * Attaches to a command started earlier (for example by another process) by its id.
   *
   * @example
   * ```ts
   * const handle = await sandbox.commands.connect(commandId, { onStdout: console.log });
   * await handle.wait();
   * ```
   */
  async connect(commandId: string, callbacks: OutputCallbacks = {}): Promise<CommandHandle> {
    const info = await this.get(commandId);
    return new CommandHandle(this.#sandboxId, info.commandId, info.pid, this.#client, callbacks);
  }

  #commandsPath(): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/commands`;
  }
}

/**
 * A command running in the background: follow its output, wait for it, or kill it.
 * `onStdout`/`onStderr` given to `run()` are fed from its log stream as soon as the handle exists.
 *
 * @example
 * ```ts
 * const handle = await sandbox.commands.run("sleep 60", { background: true });
 * await handle.kill();
 * const result = await handle.wait();
 * ```
 */
export class CommandHandle {
  /** Id of the command. */
  readonly commandId: string;
  /** Process id inside the sandbox, when known. */
  readonly pid: number | null;
  readonly #sandboxId: string;
  readonly #client: ApiClient;
  readonly #callbacks: OutputCallbacks;
  #result: Promise<CommandResult> | undefined;

  /** @internal Returned by `sandbox.commands.run(..., { background: true })` and `connect()`. */
  constructor(sandboxId: string, commandId: string, pid: number | null, client: ApiClient, callbacks: OutputCallbacks) {
    this.#sandboxId = sandboxId;
    this.commandId = commandId;
    this.pid = pid;
    this.#client = client;
    this.#callbacks = { onStdout: callbacks.onStdout, onStderr: callbacks.onStderr };
    if (callbacks.onStdout !== undefined || callbacks.onStderr !== undefined) {
      // Start following now so the callbacks see output live; wait() returns the same promise.
      this.#follow().catch(() => {});
    }
  }

  /**
   * Streams the command's events from its start (`start`, `stdout`, `stderr`, then `exit` or `error`),
   * following until it exits. Each call opens a new stream.
   *
   * @example
   * ```ts
   * for await (const event of handle.logs()) {
   *   if (event.type === "stdout") process.stdout.write(event.data);
   * }
   * ```
   */
  async *logs(opts: { signal?: AbortSignal } = {}): AsyncGenerator<ExecStreamEvent, void, undefined> {
    const response = await this.#client.stream(`${this.#path()}/logs`, {
      headers: { accept: "application/x-ndjson" },
      signal: opts.signal,
    });
    yield* parseNdjsonEvents(execStreamEventSchema, response.body, response.requestId);
  }

  /**
   * Waits for the command to exit and returns its result, with all of its output.
   *
   * @example
   * ```ts
   * const { exitCode, stdout } = await handle.wait();
   * ```
   */
  wait(): Promise<CommandResult> {
    return this.#follow();
  }

  /**
   * Sends more input to a command started with `stdinOpen: true`.
   *
   * @example
   * ```ts
   * const py = await sandbox.commands.run("python3 -i", { background: true, stdinOpen: true });
   * await py.sendStdin("print(6 * 7)\n");
   * await py.closeStdin();
   * ```
   */
  async sendStdin(data: string | Uint8Array): Promise<void> {
    const json = typeof data === "string" ? { data } : { dataBase64: Buffer.from(data).toString("base64") };
    await this.#client.empty(`${this.#path()}/stdin`, { method: "POST", json });
  }

  /** Closes the command's stdin: it reads end of file. */
  async closeStdin(): Promise<void> {
    await this.#client.empty(`${this.#path()}/stdin`, { method: "POST", json: { close: true } });
  }

  /**
   * Sends a signal to the command (`SIGKILL` unless told otherwise).
   *
   * @example
   * ```ts
   * await handle.kill("SIGTERM");
   * ```
   */
  async kill(signal: Signal = "SIGKILL"): Promise<void> {
    await this.#client.empty(`${this.#path()}/kill`, { method: "POST", json: { signal } });
  }

  /**
   * Fetches what the API knows about the command now.
   *
   * @example
   * ```ts
   * if ((await handle.info()).status === "running") await handle.kill();
   * ```
   */
  async info(): Promise<CommandInfo> {
    return this.#client.json(commandSchema, this.#path());
  }

  #follow(): Promise<CommandResult> {
    this.#result ??= collectOutput(this.logs(), this.#callbacks, {
      commandId: this.commandId,
      onEndWithoutExit: async (output) => {
        const info = await this.info();
        if (info.status === "running" || info.exitCode === null) return undefined;
        const finished = info.finishedAt === null ? Date.now() : Date.parse(info.finishedAt);
        return {
          commandId: this.commandId,
          exitCode: info.exitCode,
          stdout: output.stdout,
          stderr: output.stderr,
          durationMs: Math.max(0, finished - Date.parse(info.startedAt)),
          timedOut: info.timedOut,
          truncated: false,
        };
      },
    });
    return this.#result;
  }

  #path(): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/commands/${encodeURIComponent(this.commandId)}`;
  }
}

interface CollectContext {
  commandId?: string;
  requestId?: string | undefined;
  onEndWithoutExit?: (output: { stdout: string; stderr: string }) => Promise<CommandResult | undefined>;
}

/** Folds a command's event stream into its result, calling the output callbacks on the way. */
async function collectOutput(
  events: AsyncIterable<ExecStreamEvent>,
  callbacks: OutputCallbacks,
  context: CollectContext,
): Promise<CommandResult> {
  let commandId = context.commandId;
  let stdout = "";
  let stderr = "";
  let result: CommandResult | undefined;
  for await (const event of events) {
    // After the exit the server ends the stream at once: reading to its end (rather than cancelling it)
    // lets the connection be reused for the next request.
    if (result) continue;
    switch (event.type) {
      case "start":
        commandId = event.commandId;
        break;
      case "stdout":
        stdout += event.data;
        callbacks.onStdout?.(event.data);
        break;
      case "stderr":
        stderr += event.data;
        callbacks.onStderr?.(event.data);
        break;
      case "exit":
        result = {
          commandId: commandId ?? "",
          exitCode: event.exitCode,
          stdout,
          stderr,
          durationMs: event.durationMs,
          timedOut: event.timedOut,
          truncated: event.truncated,
        };
        break;
      case "error":
        throw streamEventError(event, context.requestId);
    }
  }
  if (result) return result;
  const settled = await context.onEndWithoutExit?.({ stdout, stderr });
  if (settled !== undefined) return settled;
  throw new NetworkError("the output stream ended before the command exited", {
    code: "network_error",
    requestId: context.requestId,
  });
}

/** Reads a plain JSON exec result, for a server that answers without streaming. */
async function resultFromJson(
  body: ReadableStream<Uint8Array>,
  requestId: string | undefined,
  callbacks: OutputCallbacks,
): Promise<CommandResult> {
  const parsed = execResultSchema.safeParse(await new Response(body).json().catch(() => undefined));
  if (!parsed.success) {
    throw new ServerError("the exec response does not match the API contract", { code: "invalid_response", requestId });
  }
  const result = parsed.data;
  if (result.stdout !== "") callbacks.onStdout?.(result.stdout);
  if (result.stderr !== "") callbacks.onStderr?.(result.stderr);
  return result;
}

/** Turns an `error` event of an output stream into the matching typed error. */
export function streamEventError(
  event: { code: string; message: string },
  requestId: string | undefined,
): SandpitError {
  const code = isErrorCode(event.code) ? event.code : "internal";
  return createError(event.message, { code, status: errorStatus[code], requestId });
}
