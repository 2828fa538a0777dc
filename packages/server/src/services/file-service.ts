import type { Readable } from "node:stream";
import type { FileEntry, FileWatchEvent } from "@sandpit/contract";
import type { OrgRecord } from "../domain/index.js";
import { type SandboxFileInfo, SandboxFiles } from "./sandbox-files.js";
import type { SandboxService } from "./sandbox-service.js";

function toEntry(e: SandboxFileInfo): FileEntry {
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

  /**
   * The files of one of the caller's running sandboxes (resumed first with autoResume), for several
   * calls of one request. `resolve` turns the caller's paths into absolute ones (a provider's rule for
   * relative paths); errors name paths as the caller gave them.
   */
  async open(org: OrgRecord, sandboxId: string, resolve?: (path: string) => string): Promise<SandboxFiles> {
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    return new SandboxFiles(sandboxId, agent, (id, e) => this.sandboxes.explainAgentFailure(id, e), resolve);
  }

  async read(org: OrgRecord, sandboxId: string, path: string): Promise<{ size: number; body: Readable }> {
    return (await this.open(org, sandboxId)).read(path);
  }

  async write(
    org: OrgRecord,
    sandboxId: string,
    path: string,
    body: Readable,
    size: number | undefined,
    mode?: number,
  ) {
    return (await this.open(org, sandboxId)).write(path, body, {
      mkdirs: true,
      ...(mode !== undefined ? { mode } : {}),
      ...(size !== undefined ? { size } : {}),
    });
  }

  async list(org: OrgRecord, sandboxId: string, path: string): Promise<FileEntry[]> {
    return (await (await this.open(org, sandboxId)).list(path)).map(toEntry);
  }

  /** Changes under a directory as they happen; the first event (`ready`) means the watch is in place. */
  async *watch(
    org: OrgRecord,
    sandboxId: string,
    path: string,
    recursive: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<FileWatchEvent> {
    const files = await this.open(org, sandboxId);
    yield* files.watch(path, { recursive, signal }, () => this.sandboxes.touch(sandboxId));
  }

  async stat(org: OrgRecord, sandboxId: string, path: string): Promise<FileEntry> {
    return toEntry(await (await this.open(org, sandboxId)).stat(path));
  }

  async remove(org: OrgRecord, sandboxId: string, path: string, recursive: boolean) {
    await (await this.open(org, sandboxId)).remove(path, { recursive });
  }

  async mkdir(org: OrgRecord, sandboxId: string, path: string, parents: boolean, mode?: number) {
    await (await this.open(org, sandboxId)).mkdir(path, { parents, ...(mode !== undefined ? { mode } : {}) });
  }
}
