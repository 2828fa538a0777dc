import type { Readable } from "node:stream";
import type { FileWatchEvent } from "@sandpit/contract";
import { type AgentClient, AgentError, type AgentFileEntry } from "../agent/agent-client.js";
import { apiErrorOfAgent } from "./agent-failures.js";
import { SandboxAccounts } from "./sandbox-accounts.js";

/**
 * A file or directory in a sandbox as the sandbox reports it (numeric owner and mode): the agent's
 * entry, named here so that routes and dialects take it from the services.
 */
export type SandboxFileInfo = AgentFileEntry;

export type FileOwner = { uid: number; gid: number };

/**
 * One running sandbox's files, for the calls of one request. Paths are taken as the caller names them
 * (errors name them so) and resolved by the caller's rule (providers resolve relative paths against a
 * home or working directory). Agent errors become API errors; a sandbox that died answers 409.
 */
export class SandboxFiles {
  /** The sandbox's users and groups (for owners by name); a missing passwd or group file is empty. */
  readonly accounts: SandboxAccounts;

  constructor(
    readonly sandboxId: string,
    private readonly agent: AgentClient,
    private readonly explainFailure: (sandboxId: string, error: unknown) => Promise<never>,
    readonly resolve: (path: string) => string = (p) => p,
  ) {
    this.accounts = new SandboxAccounts((file) => agent.readText(file).catch(() => ""));
  }

  private async call<T>(path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AgentError) throw apiErrorOfAgent(e, { path });
      return this.explainFailure(this.sandboxId, e);
    }
  }

  /** Opens a file; consume or destroy `body`. */
  read(path: string): Promise<{ size: number; body: Readable }> {
    return this.call(path, () => this.agent.readFile(this.resolve(path)));
  }

  /** A small file as UTF-8 text, read whole into memory. */
  readText(path: string): Promise<string> {
    return this.call(path, () => this.agent.readText(this.resolve(path)));
  }

  /** Writes a file atomically; a stream body is sent chunked unless `size` is given. */
  write(
    path: string,
    body: Uint8Array | Readable,
    opts: { mode?: number; mkdirs?: boolean; size?: number; owner?: FileOwner } = {},
  ): Promise<{ size: number }> {
    return this.call(path, () => this.agent.writeFile(this.resolve(path), body, opts));
  }

  stat(path: string): Promise<SandboxFileInfo> {
    return this.call(path, () => this.agent.stat(this.resolve(path)));
  }

  list(path: string): Promise<SandboxFileInfo[]> {
    return this.call(path, () => this.agent.list(this.resolve(path)));
  }

  remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    return this.call(path, () => this.agent.remove(this.resolve(path), opts));
  }

  /** Creates a directory; resolves whether it was created (false: it existed). */
  mkdir(path: string, opts: { parents?: boolean; mode?: number; owner?: FileOwner } = {}): Promise<boolean> {
    return this.call(path, () => this.agent.mkdir(this.resolve(path), opts));
  }

  /** Renames `from` to `to` (errors name `from`). */
  move(from: string, to: string): Promise<void> {
    return this.call(from, () => this.agent.move(this.resolve(from), this.resolve(to)));
  }

  /**
   * Changes under a directory as they happen; the first event (`ready`) means the watch is in place, and
   * its errors are ordinary API errors. Each later event runs `onEvent` (activity on the sandbox).
   */
  async *watch(
    path: string,
    opts: { recursive: boolean; signal: AbortSignal },
    onEvent: () => void = () => undefined,
  ): AsyncGenerator<FileWatchEvent> {
    const events = this.agent.watch(this.resolve(path), opts);
    const first = await this.call(path, () => events.next());
    if (first.done) return;
    yield first.value;
    for await (const event of events) {
      onEvent();
      yield event;
    }
  }
}
