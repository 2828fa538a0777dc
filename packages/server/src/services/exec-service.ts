import { performance } from "node:perf_hooks";
import {
  type Command,
  type ExecResult,
  type ExecStreamEvent,
  type execRequestSchema,
  execTargetSchema,
  processEnvSchema,
  type signalNames,
} from "@sandpit/contract";
import type { z } from "zod";
import {
  type AgentClient,
  AgentError,
  type AgentExecEvent,
  type AgentExecRequest,
  AgentUnreachableError,
} from "../agent/agent-client.js";
import { type CommandRecord, type OrgRecord, type SandboxRecord, StoreUnavailableError } from "../domain/index.js";
import { ApiError, notFound, validationError } from "../errors.js";
import { iso, now } from "../lib/clock.js";
import { newCommandId } from "../lib/ids.js";
import type { Store } from "../store/store.js";
import { rethrowAgentError } from "./agent-failures.js";
import { type SandboxAccount, SandboxAccounts } from "./sandbox-accounts.js";
import type { SandboxService } from "./sandbox-service.js";
import type { ServerMetrics } from "./server-metrics.js";

/** An exec request as validated; flags with defaults may be left out by callers inside the server. */
export type ExecParams = Omit<z.output<typeof execRequestSchema>, "background" | "stdinOpen"> & {
  background?: boolean;
  stdinOpen?: boolean;
};

const DEFAULT_ENV: Record<string, string> = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
  TERM: "xterm-256color",
};

const signalNumbers: Record<(typeof signalNames)[number], number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
};

function toCommand(c: CommandRecord): Command {
  return {
    commandId: c.id,
    sandboxId: c.sandboxId,
    command: c.argv,
    cwd: c.cwd,
    background: c.background,
    status: c.status,
    pid: c.pid,
    exitCode: c.exitCode,
    timedOut: c.timedOut,
    startedAt: iso(c.startedAt)!,
    finishedAt: iso(c.finishedAt),
  };
}

/** A command's output and end as the sandbox reports them (raw bytes; providers shape them). */
export type CommandOutputEvent = AgentExecEvent;

/** Agent events → the API's stream events (bytes become UTF-8 text). */
export function toStreamEvent(e: AgentExecEvent, commandId: string): ExecStreamEvent {
  switch (e.type) {
    case "started":
      return { type: "start", commandId, pid: e.pid };
    case "stdout":
    case "stderr":
      return { type: e.type, data: e.data.toString("utf8") };
    case "error":
      return { type: "error", code: e.code, message: e.message };
    case "exit":
      return {
        type: "exit",
        exitCode: e.exitCode,
        durationMs: e.durationMs,
        timedOut: e.timedOut,
        truncated: e.truncated,
      };
  }
}

/**
 * Writes a foreground command's record, which is bookkeeping: the caller gets the command's outcome on
 * its stream. While the database is unreachable the command runs unrecorded (false) rather than failing.
 */
async function bookkeeping(write: () => Promise<void>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (e) {
    if (e instanceof StoreUnavailableError) return false;
    throw e;
  }
}

/** How a command's end is recorded: killed by a signal (not our timeout) or exited. */
function exitPatch(exit: { exitCode: number; signal: number | null; timedOut: boolean }) {
  return {
    status: exit.signal !== null && !exit.timedOut ? ("killed" as const) : ("exited" as const),
    exitCode: exit.exitCode,
    timedOut: exit.timedOut,
    finishedAt: now(),
  };
}

/** Commands in sandboxes, run by the sandbox's agent. */
export class ExecService {
  constructor(
    private readonly sandboxes: SandboxService,
    private readonly store: Store,
    private readonly maxOutputBytes: number,
    private readonly metrics?: ServerMetrics,
  ) {}

  private readonly accounts = new Map<string, SandboxAccount>();

  private async agentRequest(
    sandbox: SandboxRecord,
    agent: AgentClient | undefined,
    params: ExecParams,
    id: string,
  ): Promise<AgentExecRequest> {
    // Dialects validate with their providers' schemas: the contract's rules for what reaches the
    // sandbox (no NUL, a usable uid...) are checked here for them too.
    const target = execTargetSchema.omit({ env: true }).extend({ env: processEnvSchema.optional() }).safeParse({
      command: params.command,
      args: params.args,
      cwd: params.cwd,
      env: params.env,
      user: params.user,
    });
    if (!target.success) throw validationError(target.error);
    const args = params.command !== undefined ? ["/bin/sh", "-c", params.command] : params.args!;
    const user = params.user ?? sandbox.user;
    const account =
      user !== null && user !== undefined && agent ? await this.account(sandbox.id, agent, user) : undefined;
    return {
      id,
      args,
      env: {
        ...DEFAULT_ENV,
        HOSTNAME: sandbox.id,
        ...(account ? { HOME: account.home, USER: account.name } : {}),
        ...sandbox.env,
        ...params.env,
      },
      cwd: params.cwd ?? sandbox.cwd,
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
      ...(params.timeoutMs !== undefined ? { timeoutMs: params.timeoutMs } : {}),
      ...(params.stdin !== undefined ? { stdin: Buffer.from(params.stdin) } : {}),
      ...(params.stdinOpen ? { stdinOpen: true } : {}),
      maxOutputBytes: this.maxOutputBytes,
    };
  }

  /** A user name or uid looked up in the sandbox's /etc/passwd (cached per sandbox). */
  private async account(sandboxId: string, agent: AgentClient, user: string): Promise<SandboxAccount> {
    const key = `${sandboxId}/${user}`;
    const cached = this.accounts.get(key);
    if (cached) return cached;
    // Only a missing /etc/passwd means "no users": other failures are the call's errors.
    const accounts = new SandboxAccounts((file) =>
      agent.readText(file).catch((e: unknown) => {
        if (e instanceof AgentError && e.status === 404) return "";
        throw e;
      }),
    );
    const account = await accounts.account(user);
    if (!account) {
      throw new ApiError("validation_failed", `Invalid request: user: ${user} is not a user of this sandbox`, {
        fields: [{ field: "user", rule: "unknown_user", message: `${user} is not in the sandbox's /etc/passwd` }],
      });
    }
    if (this.accounts.size > 10_000) this.accounts.clear();
    this.accounts.set(key, account);
    return account;
  }

  /**
   * Runs a command and yields its events as they happen. Aborting the signal (the client went away)
   * kills the command's process tree.
   */
  async *stream(org: OrgRecord, sandboxId: string, params: ExecParams, signal?: AbortSignal) {
    const started = performance.now();
    const { record, agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const commandId = newCommandId();
    const request = await this.agentRequest(record, agent, params, commandId);
    const events = agent.exec(request, signal ? { signal } : {});
    // Foreground commands are recorded too, so that they can be looked up like background ones.
    let recorded = false;
    let finished = false;
    try {
      for await (const event of events) {
        // A command that is producing output keeps its sandbox from counting as idle.
        this.sandboxes.touch(sandboxId);
        if (event.type === "started") {
          recorded = await bookkeeping(() =>
            this.store.insertCommand(this.newRecord(sandboxId, commandId, request, false, event.pid)),
          );
        } else if (event.type === "exit") {
          finished = true;
          this.metrics?.observeExec((performance.now() - started) / 1000);
          if (recorded) await bookkeeping(() => this.store.updateCommand(commandId, exitPatch(event)));
        }
        yield toStreamEvent(event, commandId);
      }
    } catch (e) {
      // A sandbox that died under a running command answers sandbox_failed, not a transport error.
      await this.sandboxes.explainAgentFailure(sandboxId, e);
    } finally {
      // The client went away (the agent kills the command then) or the stream broke.
      if (recorded && !finished) {
        await bookkeeping(() => this.store.updateCommand(commandId, { status: "killed", finishedAt: now() }));
      }
    }
  }

  private newRecord(
    sandboxId: string,
    id: string,
    request: AgentExecRequest,
    background: boolean,
    pid: number,
  ): CommandRecord {
    return {
      id,
      sandboxId,
      argv: request.args,
      cwd: request.cwd,
      background,
      status: "running",
      pid,
      exitCode: null,
      timedOut: false,
      startedAt: now(),
      finishedAt: null,
    };
  }

  /**
   * Runs a command to completion and returns its collected output. When the agent does not answer and
   * the command never started, it runs through the runtime (`runsc exec`) instead.
   */
  async run(org: OrgRecord, sandboxId: string, params: ExecParams, signal?: AbortSignal): Promise<ExecResult> {
    const stdout: string[] = [];
    const stderr: string[] = [];
    let result: ExecResult | undefined;
    let commandId = "";
    try {
      for await (const e of this.stream(org, sandboxId, params, signal)) {
        if (e.type === "start") commandId = e.commandId;
        else if (e.type === "stdout") stdout.push(e.data);
        else if (e.type === "stderr") stderr.push(e.data);
        else if (e.type === "exit") {
          result = {
            commandId,
            exitCode: e.exitCode,
            stdout: stdout.join(""),
            stderr: stderr.join(""),
            durationMs: e.durationMs,
            timedOut: e.timedOut,
            truncated: e.truncated,
          };
        } else if (e.type === "error") stderr.push(`${e.message}\n`);
      }
    } catch (e) {
      if (!(e instanceof AgentUnreachableError) || commandId) throw e;
      return this.runWithoutAgent(org, sandboxId, params);
    }
    if (!result) throw new ApiError("internal", "the command ended without an exit status");
    return result;
  }

  private async runWithoutAgent(org: OrgRecord, sandboxId: string, params: ExecParams): Promise<ExecResult> {
    const sandbox = await this.sandboxes.get(org, sandboxId);
    const request = await this.agentRequest(sandbox, undefined, params, newCommandId());
    const r = await this.sandboxes.execWithoutAgent(org, sandboxId, request.args, {
      cwd: request.cwd,
      env: request.env,
      ...(params.timeoutMs !== undefined ? { timeoutMs: params.timeoutMs } : {}),
      ...(params.stdin !== undefined ? { stdin: params.stdin } : {}),
    });
    return { commandId: request.id, ...r, truncated: false };
  }

  async startBackground(org: OrgRecord, sandboxId: string, params: ExecParams) {
    const { record, agent } = await this.sandboxes.requireRunning(org, sandboxId);
    return this.startBackgroundIn(record, agent, params);
  }

  private async startBackgroundIn(
    record: SandboxRecord,
    agent: AgentClient,
    params: ExecParams,
    extra: Pick<AgentExecRequest, "pty" | "stdinOpen"> = {},
  ) {
    const commandId = newCommandId();
    const request = { ...(await this.agentRequest(record, agent, params, commandId)), ...extra };
    const started = await agent.startBackground(request).catch((e) => this.sandboxes.explainAgentFailure(record.id, e));
    await this.store.insertCommand(this.newRecord(record.id, commandId, request, true, started.pid));
    return { commandId, pid: started.pid };
  }

  /** Starts a program on a new terminal (a background command whose stdin stays open). */
  async startOnTerminal(
    org: OrgRecord,
    sandboxId: string,
    params: Pick<ExecParams, "args" | "cwd" | "env" | "user">,
    size: { cols: number; rows: number },
  ) {
    const { record, agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const started = await this.startBackgroundIn(
      record,
      agent,
      { ...params, background: true },
      { pty: size, stdinOpen: true },
    );
    return started;
  }

  /** Starts a new sandbox's main process (its image's or request's entrypoint) as a background command. */
  async startMainProcess(record: SandboxRecord, agent: AgentClient, argv: string[]): Promise<string> {
    const { commandId } = await this.startBackgroundIn(record, agent, { args: argv, background: true });
    return commandId;
  }

  private async command(org: OrgRecord, sandboxId: string, commandId: string) {
    await this.sandboxes.get(org, sandboxId);
    const command = await this.store.getCommand(sandboxId, commandId);
    if (!command) throw notFound("command", commandId);
    return command;
  }

  /** A background command's record, refreshed from the agent while it runs. */
  async get(org: OrgRecord, sandboxId: string, commandId: string): Promise<Command> {
    const command = await this.command(org, sandboxId, commandId);
    if (command.status !== "running") return toCommand(command);
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    return toCommand(await this.refresh(agent, command));
  }

  private async refresh(agent: AgentClient, command: CommandRecord): Promise<CommandRecord> {
    const status = await agent.commandStatus(command.id).catch((e) => {
      if (e instanceof AgentError && e.status === 404) return undefined;
      throw e;
    });
    if (!status) {
      const patch = { status: "lost" as const, finishedAt: now() };
      await this.store.updateCommand(command.id, patch);
      return { ...command, ...patch };
    }
    if (status.running || status.exitCode === null) return command;
    const patch = exitPatch({ exitCode: status.exitCode, signal: status.signal, timedOut: status.timedOut });
    await this.store.updateCommand(command.id, patch);
    return { ...command, ...patch };
  }

  async list(org: OrgRecord, sandboxId: string): Promise<Command[]> {
    await this.sandboxes.get(org, sandboxId);
    return (await this.store.listCommands(sandboxId)).map(toCommand);
  }

  /** The command's output from its start, following it until it exits. */
  async *logs(org: OrgRecord, sandboxId: string, commandId: string, signal?: AbortSignal) {
    for await (const event of this.outputEvents(org, sandboxId, commandId, { follow: true, signal })) {
      yield toStreamEvent(event, commandId);
    }
  }

  /**
   * A background command's stored output as the agent's events: all of it so far, or (`follow`) until
   * the command exits. Foreground commands store none: their output went to the call that ran them, so
   * asking for it is a 409 rather than a 404 — the command itself exists.
   */
  async *outputEvents(
    org: OrgRecord,
    sandboxId: string,
    commandId: string,
    opts: { follow: boolean; signal?: AbortSignal | undefined },
  ): AsyncGenerator<CommandOutputEvent> {
    const command = await this.command(org, sandboxId, commandId);
    if (!command.background) {
      throw new ApiError(
        "conflict",
        `command ${commandId} ran in the foreground: its output went to the exec call that ran it; only background commands keep logs`,
      );
    }
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const events = agent.commandEvents(command.id, {
      follow: opts.follow,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    try {
      yield* events;
    } catch (e) {
      if (e instanceof AgentError && e.status === 404) {
        throw new ApiError("conflict", `command ${commandId}'s output is no longer held by the sandbox`);
      }
      throw e;
    }
  }

  /** More input for a background command started with `stdinOpen`; `close` ends its input. */
  async writeStdin(org: OrgRecord, sandboxId: string, commandId: string, data: Uint8Array, close: boolean) {
    const command = await this.command(org, sandboxId, commandId);
    if (command.status !== "running") throw new ApiError("conflict", `command ${commandId} is not running`);
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    try {
      if (data.byteLength > 0) await agent.writeStdin(command.id, data);
      if (close) await agent.closeStdin(command.id);
    } catch (e) {
      if (e instanceof AgentError && e.status === 409) {
        throw new ApiError("conflict", `command ${commandId} has no open stdin (start it with stdinOpen: true)`);
      }
      throw e;
    }
  }

  async kill(org: OrgRecord, sandboxId: string, commandId: string, signal: string | number): Promise<void> {
    const command = await this.command(org, sandboxId, commandId);
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const number = typeof signal === "number" ? signal : signalNumbers[signal as keyof typeof signalNumbers];
    if (command.status !== "running") return;
    await agent.signalCommand(command.id, number);
  }

  /**
   * Calls on a background command the caller already knows (a provider's process handle), straight to
   * the sandbox: input, end of input, a signal by number, a terminal size. Agent errors become API errors.
   */
  private async onCommand(
    org: OrgRecord,
    sandboxId: string,
    commandId: string,
    fn: (agent: AgentClient) => Promise<void>,
  ) {
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    try {
      await fn(agent);
    } catch (e) {
      if (e instanceof AgentError) rethrowAgentError(e, { command: commandId });
      await this.sandboxes.explainAgentFailure(sandboxId, e);
    }
  }

  sendInput(org: OrgRecord, sandboxId: string, commandId: string, data: Uint8Array): Promise<void> {
    return this.onCommand(org, sandboxId, commandId, (agent) => agent.writeStdin(commandId, data));
  }

  closeInput(org: OrgRecord, sandboxId: string, commandId: string): Promise<void> {
    return this.onCommand(org, sandboxId, commandId, (agent) => agent.closeStdin(commandId));
  }

  signal(org: OrgRecord, sandboxId: string, commandId: string, signal: number): Promise<void> {
    return this.onCommand(org, sandboxId, commandId, (agent) => agent.signalCommand(commandId, signal));
  }

  resizeTerminal(org: OrgRecord, sandboxId: string, commandId: string, cols: number, rows: number): Promise<void> {
    return this.onCommand(org, sandboxId, commandId, (agent) => agent.resizeTerminal(commandId, cols, rows));
  }
}
