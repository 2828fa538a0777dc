import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { ApiError } from "../../errors.js";
import { nextWithin } from "../../lib/next-within.js";
import { AgentFailure, type AgentFailureReason } from "../../services/agent-failures.js";
import type { CommandOutputEvent, ExecService } from "../../services/exec-service.js";
import type { SandboxFileInfo } from "../../services/sandbox-files.js";
import { basicUser, type EnvdSession, type EnvdSessions } from "./envd-session.js";
import { type EntryInfo, EventType, Filesystem, type FilesystemEvent, FileType } from "./gen/e2b/filesystem_pb.js";
import { Process, type ProcessEventSchema, type ProcessSelector, Signal } from "./gen/e2b/process_pb.js";

type EventInit = MessageInitShape<typeof ProcessEventSchema>;

/** What the dialect remembers about a process it started (E2B addresses processes by pid or tag). */
interface ProcessMeta {
  commandId: string;
  sandboxId: string;
  pid: number;
  tag: string | undefined;
  pty: boolean;
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd: string | undefined;
}

/** Sandpit's errors as Connect codes, so the SDK raises its own error classes. */
export function connectErrorOf(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  // What the sandbox said, where Connect has a closer code than the HTTP status gives.
  const byReason: Partial<Record<AgentFailureReason, Code>> = {
    exists: Code.AlreadyExists,
    no_space: Code.ResourceExhausted,
  };
  const closer = e instanceof AgentFailure ? byReason[e.reason] : undefined;
  if (closer !== undefined) return new ConnectError((e as AgentFailure).message, closer);
  if (e instanceof ApiError) {
    const byStatus: Record<number, Code> = {
      400: Code.InvalidArgument,
      401: Code.Unauthenticated,
      403: Code.PermissionDenied,
      404: Code.NotFound,
      409: Code.FailedPrecondition,
      503: Code.Unavailable,
    };
    return new ConnectError(e.message, byStatus[e.status] ?? Code.Internal);
  }
  return new ConnectError(e instanceof Error ? e.message : String(e), Code.Internal);
}

const signalNumber = (s: Signal) => (s === Signal.SIGKILL ? 9 : 15);

/** `Keepalive-Ping-Interval` (seconds) as milliseconds; 0 for none. */
function keepaliveMs(ctx: HandlerContext): number {
  const seconds = Number(ctx.requestHeader.get("keepalive-ping-interval") ?? "0");
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

function permissions(mode: number, type: SandboxFileInfo["type"]): string {
  const kind = type === "dir" ? "d" : type === "symlink" ? "l" : "-";
  const bits = "rwxrwxrwx";
  let out = "";
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? bits[i] : "-";
  return kind + out;
}

/**
 * envd's Connect services (process.Process and filesystem.Filesystem) over Sandpit's agent: processes
 * are background commands (on a terminal for PTY requests), files go through the agent, watches through
 * its inotify stream.
 */
export class EnvdRpc {
  private readonly processes = new Map<string, ProcessMeta>();
  private readonly watchers = new Map<string, { sandboxId: string; events: FilesystemEvent[]; stop: () => void }>();

  constructor(
    private readonly sessions: EnvdSessions,
    private readonly exec: ExecService,
  ) {}

  private session(ctx: HandlerContext): Promise<EnvdSession> {
    return this.sessions
      .open(
        ctx.requestHeader.get("e2b-sandbox-id") ?? undefined,
        ctx.requestHeader.get("x-access-token") ?? undefined,
        basicUser(ctx.requestHeader.get("authorization")),
      )
      .catch((e: unknown) => {
        throw connectErrorOf(e);
      });
  }

  private find(sandboxId: string, selector: ProcessSelector | undefined): ProcessMeta {
    const s = selector?.selector;
    for (const p of this.processes.values()) {
      if (p.sandboxId !== sandboxId) continue;
      if (s?.case === "pid" && p.pid === s.value) return p;
      if (s?.case === "tag" && p.tag === s.value) return p;
    }
    throw new ConnectError(`process ${s?.value ?? "?"} not found`, Code.NotFound);
  }

  /** A process's events as envd's, from its log: start, output, end; keepalives while it is quiet. */
  private async *events(
    session: EnvdSession,
    meta: ProcessMeta,
    ctx: HandlerContext,
    from: "start" | "now",
  ): AsyncGenerator<EventInit> {
    const every = keepaliveMs(ctx);
    const iterator = this.exec
      .outputEvents(session.org, session.record.id, meta.commandId, { follow: true, signal: ctx.signal })
      [Symbol.asyncIterator]();
    let pending = iterator.next();
    let started = from === "now";
    if (!started) {
      started = true;
      yield { event: { case: "start", value: { pid: meta.pid } } };
    }
    try {
      for (;;) {
        const next = await nextWithin<CommandOutputEvent>(pending, every);
        if (next === undefined) {
          yield { event: { case: "keepalive", value: {} } };
          continue;
        }
        if (next.done) return;
        pending = iterator.next();
        const e = next.value;
        if (e.type === "stdout" || e.type === "stderr") {
          const kind = meta.pty ? "pty" : e.type;
          yield { event: { case: "data", value: { output: { case: kind, value: e.data } } } };
        } else if (e.type === "exit") {
          const status =
            e.signal !== null && !e.timedOut
              ? `signal: ${e.signal === 9 ? "killed" : `signal ${e.signal}`}`
              : `exit status ${e.exitCode}`;
          yield { event: { case: "end", value: { exitCode: e.exitCode, exited: e.signal === null, status } } };
          return;
        } else if (e.type === "error") {
          yield {
            event: { case: "end", value: { exitCode: 127, exited: false, status: "error", error: e.message } },
          };
          return;
        }
      }
    } finally {
      await iterator.return?.(undefined);
    }
  }

  register(router: ConnectRouter): void {
    const rpc = this;
    router.service(Process, {
      async *start(req, ctx) {
        const session = await rpc.session(ctx);
        const cmd = req.process?.cmd ?? "";
        if (!cmd) throw new ConnectError("process.cmd is required", Code.InvalidArgument);
        const args = [cmd, ...(req.process?.args ?? [])];
        const cwd = session.resolve(req.process?.cwd || session.account.home);
        const params = {
          args,
          env: { HOME: session.account.home, USER: session.account.name, ...(req.process?.envs ?? {}) },
          cwd,
          user: session.account.name,
        };
        let started: { commandId: string; pid: number };
        try {
          started = req.pty?.size
            ? await rpc.exec.startOnTerminal(session.org, session.record.id, params, {
                cols: req.pty.size.cols || 80,
                rows: req.pty.size.rows || 24,
              })
            : await rpc.exec.startBackground(session.org, session.record.id, {
                ...params,
                background: true,
                stdinOpen: req.stdin === true,
              });
        } catch (e) {
          throw connectErrorOf(e);
        }
        const meta: ProcessMeta = {
          commandId: started.commandId,
          sandboxId: session.record.id,
          pid: started.pid,
          tag: req.tag,
          pty: req.pty?.size !== undefined,
          cmd,
          args: req.process?.args ?? [],
          envs: req.process?.envs ?? {},
          cwd: req.process?.cwd,
        };
        rpc.processes.set(meta.commandId, meta);
        try {
          for await (const event of rpc.events(session, meta, ctx, "start")) yield { event };
        } finally {
          if (!ctx.signal.aborted) rpc.processes.delete(meta.commandId);
        }
      },

      async *connect(req, ctx) {
        const session = await rpc.session(ctx);
        const meta = rpc.find(session.record.id, req.process);
        yield { event: { event: { case: "start", value: { pid: meta.pid } } } };
        for await (const event of rpc.events(session, meta, ctx, "now")) yield { event };
      },

      async list(_req, ctx) {
        const session = await rpc.session(ctx);
        const running = new Set(
          (await rpc.exec.list(session.org, session.record.id))
            .filter((c) => c.status === "running")
            .map((c) => c.commandId),
        );
        const processes = [...rpc.processes.values()]
          .filter((p) => p.sandboxId === session.record.id && running.has(p.commandId))
          .map((p) => ({
            pid: p.pid,
            ...(p.tag !== undefined ? { tag: p.tag } : {}),
            config: { cmd: p.cmd, args: p.args, envs: p.envs, ...(p.cwd ? { cwd: p.cwd } : {}) },
          }));
        return { processes };
      },

      async sendInput(req, ctx) {
        const session = await rpc.session(ctx);
        const meta = rpc.find(session.record.id, req.process);
        const input = req.input?.input;
        if (!input?.value) return {};
        await rpc.exec.sendInput(session.org, session.record.id, meta.commandId, input.value).catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        return {};
      },

      async streamInput(reqs, ctx) {
        const session = await rpc.session(ctx);
        let meta: ProcessMeta | undefined;
        for await (const req of reqs) {
          const e = req.event;
          if (e.case === "start") meta = rpc.find(session.record.id, e.value.process);
          else if (e.case === "data" && meta && e.value.input?.input.value) {
            await rpc.exec
              .sendInput(session.org, session.record.id, meta.commandId, e.value.input.input.value)
              .catch((err: unknown) => {
                throw connectErrorOf(err);
              });
          }
        }
        return {};
      },

      async sendSignal(req, ctx) {
        const session = await rpc.session(ctx);
        const meta = rpc.find(session.record.id, req.process);
        await rpc.exec
          .signal(session.org, session.record.id, meta.commandId, signalNumber(req.signal))
          .catch((e: unknown) => {
            throw connectErrorOf(e);
          });
        return {};
      },

      async closeStdin(req, ctx) {
        const session = await rpc.session(ctx);
        const meta = rpc.find(session.record.id, req.process);
        await rpc.exec.closeInput(session.org, session.record.id, meta.commandId).catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        return {};
      },

      async update(req, ctx) {
        const session = await rpc.session(ctx);
        const meta = rpc.find(session.record.id, req.process);
        const size = req.pty?.size;
        if (size) {
          await rpc.exec
            .resizeTerminal(session.org, session.record.id, meta.commandId, size.cols, size.rows)
            .catch((e: unknown) => {
              throw connectErrorOf(e);
            });
        }
        return {};
      },
    });

    router.service(Filesystem, {
      async stat(req, ctx) {
        const session = await rpc.session(ctx);
        return { entry: await rpc.entry(session, session.resolve(req.path)) };
      },

      async makeDir(req, ctx) {
        const session = await rpc.session(ctx);
        const target = session.resolve(req.path);
        const created = await session.files
          .mkdir(target, { parents: true, owner: { uid: session.account.uid, gid: session.account.gid } })
          .catch((e: unknown) => {
            throw connectErrorOf(e);
          });
        if (!created) throw new ConnectError(`directory ${target} already exists`, Code.AlreadyExists);
        return { entry: await rpc.entry(session, target) };
      },

      async move(req, ctx) {
        const session = await rpc.session(ctx);
        const to = session.resolve(req.destination);
        await session.files.move(session.resolve(req.source), to).catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        return { entry: await rpc.entry(session, to) };
      },

      async listDir(req, ctx) {
        const session = await rpc.session(ctx);
        const depth = req.depth || 1;
        const entries: EntryInfo[] = [];
        const walk = async (dir: string, level: number) => {
          const listed = await session.files.list(dir).catch((e: unknown) => {
            throw connectErrorOf(e);
          });
          for (const e of listed) {
            entries.push(await rpc.toEntry(session, e));
            if (e.type === "dir" && level < depth) await walk(e.path, level + 1);
          }
        };
        await walk(session.resolve(req.path), 1);
        return { entries };
      },

      async remove(req, ctx) {
        const session = await rpc.session(ctx);
        await session.files.remove(session.resolve(req.path), { recursive: true }).catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        return {};
      },

      async *watchDir(req, ctx) {
        const session = await rpc.session(ctx);
        const root = session.resolve(req.path);
        const every = keepaliveMs(ctx);
        const iterator = session.files.watch(root, { recursive: req.recursive, signal: ctx.signal });
        let pending = iterator.next().catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        try {
          for (;;) {
            const next = await nextWithin(pending, every);
            if (next === undefined) {
              yield { event: { case: "keepalive", value: {} } };
              continue;
            }
            if (next.done) return;
            pending = iterator.next();
            if (next.value.type === "ready") {
              yield { event: { case: "start", value: {} } };
              continue;
            }
            for (const event of rpc.fsEvents(root, next.value)) yield { event: { case: "filesystem", value: event } };
          }
        } finally {
          await iterator.return(undefined);
        }
      },

      async createWatcher(req, ctx) {
        const session = await rpc.session(ctx);
        const root = session.resolve(req.path);
        const abort = new AbortController();
        const watcherId = `w_${crypto.randomUUID()}`;
        const state = { sandboxId: session.record.id, events: [] as FilesystemEvent[], stop: () => abort.abort() };
        const iterator = session.files.watch(root, { recursive: req.recursive, signal: abort.signal });
        const first = await iterator.next().catch((e: unknown) => {
          throw connectErrorOf(e);
        });
        if (first.done) throw new ConnectError(`cannot watch ${root}`, Code.Internal);
        rpc.watchers.set(watcherId, state);
        void (async () => {
          try {
            for await (const e of iterator) state.events.push(...rpc.fsEvents(root, e));
          } catch {
            // stopped, or the sandbox went away
          }
        })();
        return { watcherId };
      },

      async getWatcherEvents(req, ctx) {
        const session = await rpc.session(ctx);
        const w = rpc.watchers.get(req.watcherId);
        if (!w || w.sandboxId !== session.record.id) throw new ConnectError("watcher not found", Code.NotFound);
        return { events: w.events.splice(0) };
      },

      async removeWatcher(req, ctx) {
        const session = await rpc.session(ctx);
        const w = rpc.watchers.get(req.watcherId);
        if (!w || w.sandboxId !== session.record.id) throw new ConnectError("watcher not found", Code.NotFound);
        w.stop();
        rpc.watchers.delete(req.watcherId);
        return {};
      },
    });
  }

  /** An agent watch event as envd's (a rename is the old name renamed and the new one created). */
  private fsEvents(root: string, e: { type: string; path: string; from?: string }): FilesystemEvent[] {
    const rel = (p: string) => (p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p);
    const make = (name: string, type: EventType) => ({ name: rel(name), type }) as FilesystemEvent;
    switch (e.type) {
      case "create":
        return [make(e.path, EventType.CREATE)];
      case "modify":
        return [make(e.path, EventType.WRITE)];
      case "delete":
        return [make(e.path, EventType.REMOVE)];
      case "chmod":
        return [make(e.path, EventType.CHMOD)];
      case "rename":
        return [make(e.from ?? e.path, EventType.RENAME), make(e.path, EventType.CREATE)];
      default:
        return [];
    }
  }

  private async entry(session: EnvdSession, p: string): Promise<EntryInfo> {
    const e = await session.files.stat(p).catch((err: unknown) => {
      throw connectErrorOf(err);
    });
    return this.toEntry(session, e);
  }

  private async toEntry(session: EnvdSession, e: SandboxFileInfo): Promise<EntryInfo> {
    const { owner, group } = await session.ownerOf(e);
    const type = e.type === "dir" ? FileType.DIRECTORY : e.type === "symlink" ? FileType.SYMLINK : FileType.FILE;
    return {
      name: e.name,
      type,
      path: e.path,
      size: BigInt(e.size),
      mode: e.mode & 0o7777,
      permissions: permissions(e.mode, e.type),
      owner,
      group,
      modifiedTime: timestampFromDate(new Date(e.mtime)),
      ...(e.target !== undefined ? { symlinkTarget: e.target } : {}),
      metadata: {},
    } as EntryInfo;
  }
}
