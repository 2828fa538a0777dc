import type { CreateTerminalRequest, Terminal, TerminalServerMessage } from "@sandpit/contract";
import { createTerminalRequestSchema, terminalClientMessageSchema } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { WebSocket } from "ws";
import { AgentError } from "../agent/agent-client.js";
import type { OrgRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import type { ExecService } from "./exec-service.js";
import type { SandboxService } from "./sandbox-service.js";

interface TerminalState {
  id: string;
  sandboxId: string;
  org: OrgRecord;
  pid: number;
  command: string[];
  cols: number;
  rows: number;
  /** Log offset of the output already delivered: a reconnecting client continues from here. */
  offset: number;
  socket: WebSocket | undefined;
  detachedAt: number | null;
  exitCode: number | null;
  /** Input writes, one after the other, in the order they arrived. */
  inputChain: Promise<void>;
}

const TERMINAL_ENV = { TERM: "xterm-256color", COLORTERM: "truecolor", LANG: "C.UTF-8" };

/**
 * Interactive terminals: a program on a pseudo-terminal in the sandbox (a background command with a
 * pty), reached over a WebSocket. Output is kept in the command's log, so a client that reconnects gets
 * what it missed; a terminal nobody is attached to is ended after `detachedTimeoutMs`.
 */
export class TerminalService {
  private readonly terminals = new Map<string, TerminalState>();

  constructor(
    private readonly sandboxes: SandboxService,
    private readonly exec: ExecService,
    private readonly log: FastifyBaseLogger,
    private readonly detachedTimeoutMs = 10 * 60 * 1000,
  ) {}

  async create(org: OrgRecord, sandboxId: string, body: CreateTerminalRequest): Promise<Terminal> {
    const params = createTerminalRequestSchema.parse(body);
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const command =
      params.command ??
      (await agent
        .stat("/bin/bash")
        .then(() => ["/bin/bash", "-l"])
        .catch(() => ["/bin/sh", "-l"]));
    const started = await this.exec.startOnTerminal(
      org,
      sandboxId,
      {
        args: command,
        env: { ...TERMINAL_ENV, ...params.env },
        ...(params.cwd !== undefined ? { cwd: params.cwd } : {}),
        ...(params.user !== undefined ? { user: params.user } : {}),
      },
      { cols: params.cols, rows: params.rows },
    );
    const state: TerminalState = {
      id: started.commandId,
      sandboxId,
      org,
      pid: started.pid,
      command,
      cols: params.cols,
      rows: params.rows,
      offset: 0,
      socket: undefined,
      detachedAt: Date.now(),
      exitCode: null,
      inputChain: Promise.resolve(),
    };
    this.terminals.set(state.id, state);
    return this.toTerminal(state);
  }

  private toTerminal(t: TerminalState): Terminal {
    return {
      terminalId: t.id,
      sandboxId: t.sandboxId,
      pid: t.pid,
      command: t.command,
      cols: t.cols,
      rows: t.rows,
      attached: t.socket !== undefined,
      exitCode: t.exitCode,
    };
  }

  private async state(org: OrgRecord, sandboxId: string, terminalId: string): Promise<TerminalState> {
    await this.sandboxes.get(org, sandboxId);
    const t = this.terminals.get(terminalId);
    if (!t || t.sandboxId !== sandboxId || t.org.id !== org.id) {
      throw new ApiError("not_found", `terminal ${terminalId} not found`);
    }
    return t;
  }

  async list(org: OrgRecord, sandboxId: string): Promise<Terminal[]> {
    await this.sandboxes.get(org, sandboxId);
    return [...this.terminals.values()]
      .filter((t) => t.sandboxId === sandboxId && t.org.id === org.id)
      .map((t) => this.toTerminal(t));
  }

  async get(org: OrgRecord, sandboxId: string, terminalId: string): Promise<Terminal> {
    return this.toTerminal(await this.state(org, sandboxId, terminalId));
  }

  async input(org: OrgRecord, sandboxId: string, terminalId: string, data: Uint8Array): Promise<void> {
    const t = await this.state(org, sandboxId, terminalId);
    await this.write(t, data);
  }

  private write(t: TerminalState, data: Uint8Array): Promise<void> {
    const next = t.inputChain.then(async () => {
      const { agent } = await this.sandboxes.requireRunning(t.org, t.sandboxId);
      await agent.writeStdin(t.id, data).catch((e) => {
        if (e instanceof AgentError && e.status === 409) throw new ApiError("conflict", "the terminal has ended");
        throw e;
      });
    });
    t.inputChain = next.catch(() => undefined);
    return next;
  }

  async resize(org: OrgRecord, sandboxId: string, terminalId: string, cols: number, rows: number): Promise<Terminal> {
    const t = await this.state(org, sandboxId, terminalId);
    await this.applySize(t, cols, rows);
    return this.toTerminal(t);
  }

  private async applySize(t: TerminalState, cols: number, rows: number): Promise<void> {
    const { agent } = await this.sandboxes.requireRunning(t.org, t.sandboxId);
    await agent.resizeTerminal(t.id, cols, rows);
    t.cols = cols;
    t.rows = rows;
  }

  async kill(org: OrgRecord, sandboxId: string, terminalId: string): Promise<void> {
    const t = await this.state(org, sandboxId, terminalId);
    await this.end(t);
  }

  private async end(t: TerminalState): Promise<void> {
    this.terminals.delete(t.id);
    t.socket?.close(1000, "terminal ended");
    const agent = await this.sandboxes
      .requireRunning(t.org, t.sandboxId)
      .then((r) => r.agent)
      .catch(() => undefined);
    await agent?.signalCommand(t.id, 9).catch(() => undefined);
  }

  /**
   * Connects a WebSocket to the terminal: output as binary messages (from where the last client left
   * off), input as binary messages or `{type: "input"}` text messages, `{type: "resize"}`; an `exit`
   * message and a normal close when the program ends. A new client replaces the previous one.
   */
  async attach(org: OrgRecord, sandboxId: string, terminalId: string, socket: WebSocket): Promise<void> {
    // A client may type as soon as the socket opens, before the terminal is looked up: what it sends
    // meanwhile is held and handled first, in order (a socket without a listener drops messages).
    const early: [Buffer, boolean][] = [];
    const hold = (data: Buffer, isBinary: boolean) => early.push([data, isBinary]);
    socket.on("message", hold);
    const t = await this.state(org, sandboxId, terminalId);
    socket.off("message", hold);
    t.socket?.close(4000, "another client attached");
    t.socket = socket;
    t.detachedAt = null;
    const abort = new AbortController();
    const send = (m: TerminalServerMessage) => socket.send(JSON.stringify(m));
    const onMessage = (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        this.write(t, data).catch((e: unknown) => send({ type: "error", code: "input_failed", message: String(e) }));
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(data.toString("utf8"));
      } catch {
        parsed = undefined;
      }
      const message = terminalClientMessageSchema.safeParse(parsed);
      if (!message.success) {
        send({ type: "error", code: "bad_message", message: "expected {type: input|resize}" });
        return;
      }
      const m = message.data;
      const done = m.type === "input" ? this.write(t, Buffer.from(m.data)) : this.applySize(t, m.cols, m.rows);
      done.catch((e: unknown) => send({ type: "error", code: `${m.type}_failed`, message: String(e) }));
    };
    socket.on("message", onMessage);
    for (const [data, isBinary] of early) onMessage(data, isBinary);
    socket.on("close", () => {
      abort.abort();
      if (t.socket === socket) {
        t.socket = undefined;
        t.detachedAt = Date.now();
      }
    });
    try {
      const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
      for await (const event of agent.commandEvents(t.id, { offset: t.offset, follow: true, signal: abort.signal })) {
        this.sandboxes.touch(sandboxId);
        if (event.type === "stdout" || event.type === "stderr") socket.send(event.data);
        else if (event.type === "exit") {
          t.exitCode = event.exitCode;
          send({ type: "exit", exitCode: event.exitCode });
        }
        t.offset = event.offset;
      }
      if (t.exitCode !== null) {
        this.terminals.delete(t.id);
        socket.close(1000, "exited");
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      this.log.warn({ err: e, terminalId }, "terminal stream ended");
      send({ type: "error", code: "stream_failed", message: e instanceof Error ? e.message : String(e) });
      socket.close(1011, "stream failed");
    }
  }

  /** Ends terminals nobody has been attached to for a while, and forgets those of gone sandboxes. */
  async sweep(): Promise<void> {
    const now = Date.now();
    for (const t of [...this.terminals.values()]) {
      if (t.socket || t.detachedAt === null || now - t.detachedAt < this.detachedTimeoutMs) continue;
      this.log.info({ terminalId: t.id, sandboxId: t.sandboxId }, "ending a detached terminal");
      await this.end(t);
    }
  }
}
