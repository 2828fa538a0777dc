import { type Command, type ExecStreamEvent, execRequestSchema } from "@sandpit/contract";
import { ApiError, validationError } from "../../errors.js";
import type { ExecParams } from "../../services/exec-service.js";
import type { AppServices } from "../../services/index.js";
import { resolvePath, type SandboxAccess } from "./execd-session.js";
import type { RunCommand } from "./schemas.js";

/**
 * execd runs commands with bash; Sandpit's images may not have it, so the wrapper falls back to sh.
 * The command itself is the wrapper's `$1`, never spliced into shell text.
 */
const SHELL_WRAPPER = 'if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; else exec /bin/sh -c "$1"; fi';
const WRAPPER_NAME = "opensandbox-execd";

/** The command text a client sent, from the argv Sandpit recorded. */
export function commandTextOf(argv: string[]): string {
  return argv.length === 5 && argv[3] === WRAPPER_NAME ? argv[4]! : argv.join(" ");
}

/** execd's stream events for one command (`init`, output, then `execution_complete` or `error`). */
export type ExecdEvent =
  | { type: "init"; text: string; timestamp: number }
  | { type: "stdout" | "stderr"; text: string; timestamp: number }
  | { type: "execution_complete"; execution_time: number; timestamp: number }
  | { type: "error"; error: { ename: string; evalue: string; traceback: string[] }; timestamp: number };

/**
 * Sandpit's exec events as execd's: a non-zero exit is an `error` event whose `evalue` is the exit code
 * (that is how OpenSandbox's SDKs read exit codes); exit 0 is `execution_complete`.
 */
export async function* execdEventsOf(events: AsyncIterable<ExecStreamEvent>): AsyncGenerator<ExecdEvent> {
  for await (const e of events) {
    const timestamp = Date.now();
    if (e.type === "start") yield { type: "init", text: e.commandId, timestamp };
    else if (e.type === "stdout" || e.type === "stderr") {
      if (e.data) yield { type: e.type, text: e.data, timestamp };
    } else if (e.type === "exit") {
      if (e.exitCode === 0 && !e.timedOut) {
        yield { type: "execution_complete", execution_time: Math.round(e.durationMs), timestamp };
      } else {
        const why = e.timedOut ? "command timed out" : `exit status ${e.exitCode}`;
        yield {
          type: "error",
          error: { ename: "CommandExecError", evalue: String(e.exitCode), traceback: [why] },
          timestamp,
        };
      }
    } else {
      yield {
        type: "error",
        error: { ename: "CommandExecError", evalue: e.message, traceback: [e.message] },
        timestamp,
      };
    }
  }
}

/** What went wrong with a finished command, in execd's `error` field. */
function errorOf(c: Command): string | undefined {
  if (c.status === "killed") return "killed by a signal";
  if (c.status === "lost") return "the command's process was lost";
  if (c.timedOut) return "command timed out";
  if (c.exitCode !== null && c.exitCode !== 0) return `exit status ${c.exitCode}`;
  return undefined;
}

/** Combined output split for execd's line cursor: complete lines, and the unfinished last one. */
export function logLines(output: string, finished: boolean): { lines: string[]; partial: string } {
  const parts = output.split("\n");
  const partial = parts.pop() ?? "";
  const lines = parts.map((l) => `${l}\n`);
  if (finished && partial) return { lines: [...lines, partial], partial: "" };
  return { lines, partial };
}

/** execd's command endpoints over Sandpit's exec service. */
export class ExecdCommands {
  constructor(private readonly services: Pick<AppServices, "exec" | "files">) {}

  /** Sandpit exec parameters for an execd command (uid as the user; gid must be that user's group). */
  async params(access: SandboxAccess, body: RunCommand): Promise<ExecParams> {
    if (body.gid !== undefined) {
      const files = await this.services.files.open(access.org, access.record.id);
      const account = await files.accounts.user(String(body.uid));
      const primary = account?.gid ?? body.uid!;
      if (body.gid !== primary) {
        throw new ApiError(
          "not_implemented",
          `gid: commands run with the primary group of their uid (${primary}); another gid is not supported`,
          { field: "gid" },
        );
      }
    }
    const parsed = execRequestSchema.safeParse({
      args: ["/bin/sh", "-c", SHELL_WRAPPER, WRAPPER_NAME, body.command],
      ...(body.cwd ? { cwd: resolvePath(access.record, body.cwd) } : {}),
      ...(body.envs ? { env: body.envs } : {}),
      ...(body.timeout ? { timeoutMs: body.timeout } : {}),
      ...(body.uid !== undefined ? { user: String(body.uid) } : {}),
    });
    if (!parsed.success) throw validationError(parsed.error);
    return parsed.data;
  }

  /** A foreground command's events as they happen; aborting the signal kills it. */
  async run(access: SandboxAccess, body: RunCommand, signal: AbortSignal): Promise<AsyncIterable<ExecdEvent>> {
    const params = await this.params(access, body);
    return execdEventsOf(this.services.exec.stream(access.org, access.record.id, params, signal));
  }

  /** Starts a background command: its stream is `init` (the command id) and `execution_complete` (started). */
  async start(access: SandboxAccess, body: RunCommand): Promise<ExecdEvent[]> {
    const started = Date.now();
    const params = await this.params(access, body);
    const { commandId } = await this.services.exec.startBackground(access.org, access.record.id, {
      ...params,
      background: true,
    });
    const timestamp = Date.now();
    return [
      { type: "init", text: commandId, timestamp },
      { type: "execution_complete", execution_time: timestamp - started, timestamp },
    ];
  }

  async status(access: SandboxAccess, commandId: string) {
    const c = await this.services.exec.get(access.org, access.record.id, commandId);
    const error = errorOf(c);
    return {
      id: c.commandId,
      content: commandTextOf(c.command),
      running: c.status === "running",
      exit_code: c.status === "running" ? null : c.exitCode,
      ...(error ? { error } : {}),
      started_at: c.startedAt,
      finished_at: c.finishedAt,
    };
  }

  /**
   * A command's combined stdout and stderr so far; with `cursor`, only the lines from that line on. The
   * next cursor counts complete lines, so an unfinished last line is sent again once it is complete.
   */
  async logs(access: SandboxAccess, commandId: string, cursor: number | undefined) {
    const command = await this.services.exec.get(access.org, access.record.id, commandId);
    const chunks: Buffer[] = [];
    for await (const e of this.services.exec.outputEvents(access.org, access.record.id, commandId, { follow: false })) {
      if (e.type === "stdout" || e.type === "stderr") chunks.push(e.data);
    }
    const output = Buffer.concat(chunks).toString("utf8");
    const { lines } = logLines(output, command.status !== "running");
    return { content: cursor === undefined ? output : lines.slice(cursor).join(""), cursor: lines.length };
  }

  async interrupt(access: SandboxAccess, commandId: string): Promise<void> {
    await this.services.exec.kill(access.org, access.record.id, commandId, "SIGTERM");
  }
}
