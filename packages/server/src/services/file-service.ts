import type { Readable } from "node:stream";
import type { FileEntry, FileWatchEvent } from "@sandpit/contract";
import { AgentError, type AgentFileEntry } from "../agent/agent-client.js";
import { ApiError } from "../errors.js";
import type { OrgRecord } from "../store/store.js";
import type { SandboxService } from "./sandbox-service.js";

/** The agent's message about a path, naming it once (errno messages already start with it). */
const withPath = (message: string, path: string) => (message.startsWith(`${path}: `) ? message : `${path}: ${message}`);

/** Agent file errors → API errors. Paths are resolved inside the sandbox by its own kernel. */
export function mapAgentError(e: unknown, path: string): never {
  if (!(e instanceof AgentError)) throw e;
  switch (e.code) {
    case "not_found":
      throw new ApiError("file_not_found", `${path}: no such file or directory`);
    case "is_directory":
      throw new ApiError("bad_request", `${path} is a directory`);
    case "not_directory":
      throw new ApiError("bad_request", `${path}: a path component is not a directory`);
    case "exists":
      throw new ApiError("conflict", `${path} already exists`);
    case "busy":
      throw new ApiError("conflict", `${path} is in use: a mount point cannot be removed or moved`);
    case "not_empty":
      throw new ApiError("conflict", `${path} is a directory that is not empty (use recursive=true)`);
    case "permission_denied":
      throw new ApiError("forbidden", `${path}: permission denied`);
    case "no_space":
      throw new ApiError("insufficient_storage", `${path}: the sandbox's disk is full`);
    case "too_large":
      throw new ApiError("payload_too_large", `${path}: too large`);
    case "bad_request":
      // The agent refused what was asked (a fifo or device to read, / to delete, a name too long...).
      throw new ApiError("bad_request", withPath(e.message, path));
    default:
      throw new ApiError("internal", withPath(e.message, path));
  }
}

function toEntry(e: AgentFileEntry): FileEntry {
  return {
    name: e.name,
    path: e.path,
    type: e.type,
    size: e.size,
    mode: `0${(e.mode & 0o7777).toString(8)}`,
    mtime: e.mtime,
    ...(e.target !== undefined ? { target: e.target } : {}),
  };
}

/** Files in sandboxes, through the sandbox's agent. */
export class FileService {
  constructor(private readonly sandboxes: SandboxService) {}

  private async agent(org: OrgRecord, sandboxId: string) {
    return (await this.sandboxes.requireRunning(org, sandboxId)).agent;
  }

  private async call<T>(sandboxId: string, path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AgentError) mapAgentError(e, path);
      return this.sandboxes.explainAgentFailure(sandboxId, e);
    }
  }

  async read(org: OrgRecord, sandboxId: string, path: string): Promise<{ size: number; body: Readable }> {
    const agent = await this.agent(org, sandboxId);
    return this.call(sandboxId, path, () => agent.readFile(path));
  }

  async write(
    org: OrgRecord,
    sandboxId: string,
    path: string,
    body: Readable,
    size: number | undefined,
    mode?: number,
  ) {
    const agent = await this.agent(org, sandboxId);
    return this.call(sandboxId, path, () =>
      agent.writeFile(path, body, {
        mkdirs: true,
        ...(mode !== undefined ? { mode } : {}),
        ...(size !== undefined ? { size } : {}),
      }),
    );
  }

  async list(org: OrgRecord, sandboxId: string, path: string): Promise<FileEntry[]> {
    const agent = await this.agent(org, sandboxId);
    return (await this.call(sandboxId, path, () => agent.list(path))).map(toEntry);
  }

  /** Changes under a directory as they happen; the first event (`ready`) means the watch is in place. */
  async *watch(
    org: OrgRecord,
    sandboxId: string,
    path: string,
    recursive: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<FileWatchEvent> {
    const agent = await this.agent(org, sandboxId);
    const events = agent.watch(path, { recursive, signal });
    // The first event arrives once the agent accepted the path: its errors are ordinary API errors.
    const first = await this.call(sandboxId, path, () => events.next());
    if (first.done) return;
    yield first.value;
    for await (const event of events) {
      this.sandboxes.touch(sandboxId);
      yield event;
    }
  }

  async stat(org: OrgRecord, sandboxId: string, path: string): Promise<FileEntry> {
    const agent = await this.agent(org, sandboxId);
    return toEntry(await this.call(sandboxId, path, () => agent.stat(path)));
  }

  async remove(org: OrgRecord, sandboxId: string, path: string, recursive: boolean) {
    const agent = await this.agent(org, sandboxId);
    await this.call(sandboxId, path, () => agent.remove(path, { recursive }));
  }

  async mkdir(org: OrgRecord, sandboxId: string, path: string, parents: boolean, mode?: number) {
    const agent = await this.agent(org, sandboxId);
    await this.call(sandboxId, path, () => agent.mkdir(path, { parents, ...(mode !== undefined ? { mode } : {}) }));
  }
}
