import { randomUUID } from "node:crypto";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { AppServices } from "../../services/index.js";
import { exitCodeOf } from "../opensandbox/execd-code.js";

/** One command run in a session, as `getSessionCommand` and its logs show it. */
interface SessionCommand {
  id: string;
  command: string;
  stdout: string;
  stderr: string;
  /** In arrival order, stdout and stderr together. */
  output: string;
  exitCode: number | undefined;
  done: Promise<void>;
}

interface Session {
  contextId: string;
  commands: Map<string, SessionCommand>;
}

/**
 * Daytona's process sessions — a shell that keeps its working directory, variables and functions from
 * one command to the next — as Sandpit bash code contexts, one per session. The dialect keeps which
 * context a session id names and the output of its commands, in the memory of the node the sandbox lives
 * on (requests for a sandbox are forwarded there), so sessions end with that server process; the
 * contexts themselves are processes of the sandbox and go with it.
 */
export class DaytonaSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly services: Pick<AppServices, "code">) {}

  private key = (sandboxId: string, sessionId: string) => `${sandboxId}/${sessionId}`;

  private session(sandboxId: string, sessionId: string): Session {
    const session = this.sessions.get(this.key(sandboxId, sessionId));
    if (!session) {
      throw new ApiError("not_found", `session ${sessionId} not found`, { daytonaCode: "PROCESS_NOT_FOUND" });
    }
    return session;
  }

  async create(org: OrgRecord, record: SandboxRecord, sessionId: string): Promise<void> {
    const key = this.key(record.id, sessionId);
    if (this.sessions.has(key)) throw new ApiError("conflict", `session ${sessionId} already exists`);
    const context = await this.services.code.createContext(org, record.id, { language: "bash", cwd: record.cwd });
    this.sessions.set(key, { contextId: context.id, commands: new Map() });
  }

  list(sandboxId: string) {
    const prefix = `${sandboxId}/`;
    return [...this.sessions.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, s]) => ({ sessionId: k.slice(prefix.length), commands: [...s.commands.values()].map(commandOf) }));
  }

  get(sandboxId: string, sessionId: string) {
    const session = this.session(sandboxId, sessionId);
    return { sessionId, commands: [...session.commands.values()].map(commandOf) };
  }

  async delete(org: OrgRecord, sandboxId: string, sessionId: string): Promise<void> {
    const session = this.session(sandboxId, sessionId);
    this.sessions.delete(this.key(sandboxId, sessionId));
    await this.services.code.deleteContext(org, sandboxId, session.contextId).catch(() => undefined);
  }

  /** Forgets a sandbox's sessions (it was deleted). */
  forget(sandboxId: string) {
    for (const key of this.sessions.keys()) if (key.startsWith(`${sandboxId}/`)) this.sessions.delete(key);
  }

  /**
   * Runs a command in the session's shell. The cell starts before this resolves (errors up front are
   * the caller's); with `wait`, it resolves once the command ended.
   */
  async execute(org: OrgRecord, sandboxId: string, sessionId: string, command: string, wait: boolean) {
    const session = this.session(sandboxId, sessionId);
    const cell = await this.services.code.run(org, sandboxId, { code: command, contextId: session.contextId });
    const entry: SessionCommand = {
      id: randomUUID(),
      command,
      stdout: "",
      stderr: "",
      output: "",
      exitCode: undefined,
      done: Promise.resolve(),
    };
    entry.done = (async () => {
      let exitCode = 0;
      try {
        for await (const e of cell.events) {
          if (e.type === "stdout" || e.type === "stderr") {
            entry[e.type] += e.text;
            entry.output += e.text;
          } else if (e.type === "error") {
            exitCode = exitCodeOf(e) ?? 1;
            if (exitCodeOf(e) === undefined) {
              entry.stderr += `${e.name}: ${e.value}\n`;
              entry.output += `${e.name}: ${e.value}\n`;
            }
          }
        }
      } catch {
        exitCode = -1;
      }
      entry.exitCode = exitCode;
    })();
    session.commands.set(entry.id, entry);
    if (wait) await entry.done;
    return entry;
  }

  command(sandboxId: string, sessionId: string, commandId: string): SessionCommand {
    const entry = this.session(sandboxId, sessionId).commands.get(commandId);
    if (!entry) {
      throw new ApiError("not_found", `command ${commandId} not found in session ${sessionId}`, {
        daytonaCode: "PROCESS_NOT_FOUND",
      });
    }
    return entry;
  }
}

/** Daytona's `Command` of a session. */
export function commandOf(c: SessionCommand) {
  return { id: c.id, command: c.command, ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}) };
}
