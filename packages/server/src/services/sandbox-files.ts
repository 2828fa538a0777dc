import path from "node:path";
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
  /** Directories known to exist, so that a request writing many files checks each parent once. */
  private readonly knownDirs = new Set<string>();

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
    file: string,
    body: Uint8Array | Readable,
    opts: { mode?: number; mkdirs?: boolean; size?: number; owner?: FileOwner } = {},
  ): Promise<{ size: number }> {
    return this.call(file, async () => {
      const target = this.resolve(file);
      if (opts.mkdirs && opts.owner) await this.makeParentsOwned(target, opts.owner);
      return this.agent.writeFile(target, body, opts);
    });
  }

  /**
   * Makes the missing directories above `target`, each owned by `owner`: the agent's own `mkdirs` gives
   * the owner only to what it writes, and a user's upload to a new directory must leave that directory
   * the user's too (else the user's commands cannot add to it).
   */
  private async makeParentsOwned(target: string, owner: FileOwner): Promise<void> {
    const dir = path.posix.dirname(target);
    if (dir === target || this.knownDirs.has(dir)) return;
    const exists = await this.agent.stat(dir).then(
      () => true,
      (e) => {
        if (e instanceof AgentError && e.status === 404) return false;
        throw e;
      },
    );
    if (!exists) {
      await this.makeParentsOwned(dir, owner);
      await this.agent.mkdir(dir, { owner }).catch((e) => {
        // Made meanwhile by a concurrent write: it exists, which is all this needs.
        if (!(e instanceof AgentError && e.code === "exists")) throw e;
      });
    }
    this.knownDirs.add(dir);
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
  mkdir(dir: string, opts: { parents?: boolean; mode?: number; owner?: FileOwner } = {}): Promise<boolean> {
    return this.call(dir, async () => {
      const target = this.resolve(dir);
      if (opts.parents && opts.owner) await this.makeParentsOwned(target, opts.owner);
      return this.agent.mkdir(target, opts);
    });
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
