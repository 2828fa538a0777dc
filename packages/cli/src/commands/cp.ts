import type { Dirent } from "node:fs";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, mkdir, readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { type FileEntry, FileNotFoundError, Sandbox, SandpitError } from "sandpit";
import { flagOption, UsageError } from "../args.js";
import { type CliCommand, type Context, jsonOption } from "../command.js";
import { humanBytes, toJson } from "../format.js";
import { TransferProgress } from "../progress.js";

const REMOTE = /^(sbx_[A-Za-z0-9]+):(.*)$/;
/** Files up to this size are sent in one buffer (and so can be retried); larger ones are streamed. */
const BUFFER_LIMIT = 1024 * 1024;
/** Files transferred at once when copying a directory. */
const PARALLEL = 4;

type Location = { kind: "local"; path: string } | { kind: "remote"; id: string; path: string };

interface Tally {
  files: number;
  bytes: number;
  /** The bar on stderr while bytes flow (drawn only on a terminal). */
  progress: TransferProgress;
}

export const cpCommand: CliCommand = {
  name: "cp",
  usage: "SRC DST [--json]  (one side is ID:/path; directories are copied recursively; - is stdin/stdout)",
  summary: "Copy files and directories between this machine and a sandbox (--json: {files, bytes, to} on stdout)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length !== 2) throw new UsageError("cp: expects SRC and DST, one of them ID:/path");
    const [src, dst] = positionals.map(parseLocation) as [Location, Location];
    if (src.kind === dst.kind) {
      throw new UsageError(`cp: exactly one of SRC and DST must be in a sandbox (ID:/path)`);
    }
    const remote = src.kind === "remote" ? src : (dst as Extract<Location, { kind: "remote" }>);
    const local = src.kind === "local" ? src.path : (dst as Extract<Location, { kind: "local" }>).path;
    const sandbox = await Sandbox.get(remote.id, ctx.connection);
    const remotePath = path.posix.resolve(sandbox.cwd, remote.path === "" ? "." : remote.path);
    const keepsSlash = remote.path.endsWith("/") && remotePath !== "/" ? "/" : "";
    const tally: Tally = { files: 0, bytes: 0, progress: new TransferProgress(ctx.stderr, "copying") };
    const target = await (src.kind === "local"
      ? upload(ctx, sandbox, local, remotePath + keepsSlash, tally)
      : download(ctx, sandbox, remotePath, local, tally)
    ).finally(() => tally.progress.finish());
    if (target !== "-") {
      const where = src.kind === "local" ? `${sandbox.id}:${target}` : target;
      if (flagOption(values, "json")) {
        ctx.stdout.write(toJson({ files: tally.files, bytes: tally.bytes, to: where }));
        return 0;
      }
      const files = tally.files === 1 ? "1 file" : `${tally.files} files`;
      ctx.stderr.write(`Copied ${files} (${humanBytes(tally.bytes)}) to ${where}\n`);
    }
    return 0;
  },
};

function parseLocation(text: string): Location {
  const match = REMOTE.exec(text);
  return match === null ? { kind: "local", path: text } : { kind: "remote", id: match[1]!, path: match[2]! };
}

/** Copies a local file or directory into the sandbox and returns where it landed. */
async function upload(ctx: Context, sandbox: Sandbox, local: string, remote: string, tally: Tally): Promise<string> {
  if (local === "-") {
    const info = await sandbox.files.write(remote, ctx.stdin);
    tally.files++;
    tally.bytes += info.size;
    return info.path;
  }
  const source = await stat(local);
  const existing = await remoteEntry(sandbox, remote);
  const intoDirectory = remote.endsWith("/") || existing?.type === "dir";
  const target = intoDirectory ? path.posix.join(remote, path.basename(path.resolve(local))) : remote;
  if (source.isDirectory()) {
    if (!intoDirectory && existing !== undefined) {
      throw new UsageError(`cp: cannot copy a directory onto the file ${sandbox.id}:${remote}`);
    }
    const files: [string, string, number][] = [];
    await sandbox.files.mkdir(target, { mode: source.mode & 0o777 });
    await walkLocal(sandbox, local, target, files, ctx);
    for (const [from] of files) tally.progress.expect((await stat(from)).size);
    await inParallel(files, async ([from, to, mode]) => {
      tally.bytes += await uploadFile(sandbox, from, to, mode, tally.progress);
      tally.files++;
    });
  } else {
    tally.progress.expect(source.size);
    tally.bytes += await uploadFile(sandbox, local, target, source.mode & 0o777, tally.progress);
    tally.files++;
  }
  return target;
}

async function uploadFile(
  sandbox: Sandbox,
  from: string,
  to: string,
  mode: number,
  progress: TransferProgress,
): Promise<number> {
  const size = (await stat(from)).size;
  if (size <= BUFFER_LIMIT) {
    // A small file is one buffered request (retried if need be), counted once the server has it.
    const written = await sandbox.files.write(to, await readFile(from), { mode });
    progress.add(written.size);
    return written.size;
  }
  return (await sandbox.files.write(to, progress.count(createReadStream(from)), { mode })).size;
}

/**
 * Walks a local directory: creates each subdirectory remotely (parents first) and collects the
 * files to transfer. Symlinks and special files are skipped with a warning.
 */
async function walkLocal(
  sandbox: Sandbox,
  localDir: string,
  remoteDir: string,
  files: [string, string, number][],
  ctx: Context,
): Promise<void> {
  const entries: Dirent[] = await readdir(localDir, { withFileTypes: true });
  for (const entry of entries) {
    const from = path.join(localDir, entry.name);
    const to = path.posix.join(remoteDir, entry.name);
    if (entry.isDirectory()) {
      await sandbox.files.mkdir(to, { mode: (await stat(from)).mode & 0o777 });
      await walkLocal(sandbox, from, to, files, ctx);
    } else if (entry.isFile()) {
      files.push([from, to, (await stat(from)).mode & 0o777]);
    } else {
      ctx.stderr.write(`sandpit: skipping ${from}: not a regular file or directory\n`);
    }
  }
}

/** Copies a file or directory out of the sandbox and returns where it landed. */
async function download(ctx: Context, sandbox: Sandbox, remote: string, local: string, tally: Tally): Promise<string> {
  const entry = await remoteEntry(sandbox, remote);
  if (entry === undefined) {
    throw new FileNotFoundError(`no such file or directory: ${sandbox.id}:${remote}`, { code: "file_not_found" });
  }
  if (local === "-") {
    if (entry.type === "dir") throw new UsageError("cp: cannot copy a directory to stdout");
    tally.bytes += await downloadFile(sandbox, remote, ctx.stdout, tally.progress);
    return "-";
  }
  const existing = await stat(local).catch(() => undefined);
  const intoDirectory = existing?.isDirectory() === true || local.endsWith("/") || local.endsWith(path.sep);
  const name = path.posix.basename(remote) || sandbox.id;
  const target = intoDirectory ? path.join(local, name) : local;
  if (entry.type === "dir") {
    if (!intoDirectory && existing !== undefined)
      throw new UsageError(`cp: cannot copy a directory onto the file ${local}`);
    const files: [string, string, number][] = [];
    await mkdir(target, { recursive: true });
    await walkRemote(sandbox, remote, target, files, ctx, tally.progress);
    await inParallel(files, async ([from, to, mode]) => {
      tally.bytes += await downloadFile(sandbox, from, to, tally.progress, mode);
      tally.files++;
    });
  } else {
    if (intoDirectory) await mkdir(local, { recursive: true });
    tally.progress.expect(entry.size);
    tally.bytes += await downloadFile(sandbox, remote, target, tally.progress, parseMode(entry.mode));
    tally.files++;
  }
  return target;
}

async function walkRemote(
  sandbox: Sandbox,
  remoteDir: string,
  localDir: string,
  files: [string, string, number][],
  ctx: Context,
  progress: TransferProgress,
): Promise<void> {
  for (const entry of await sandbox.files.list(remoteDir)) {
    const from = path.posix.join(remoteDir, entry.name);
    const to = path.join(localDir, entry.name);
    if (entry.type === "dir") {
      await mkdir(to, { recursive: true });
      await walkRemote(sandbox, from, to, files, ctx, progress);
    } else if (entry.type === "file") {
      progress.expect(entry.size);
      files.push([from, to, parseMode(entry.mode)]);
    } else {
      ctx.stderr.write(`sandpit: skipping ${sandbox.id}:${from}: not a regular file or directory\n`);
    }
  }
}

async function downloadFile(
  sandbox: Sandbox,
  from: string,
  to: string | NodeJS.WritableStream,
  progress: TransferProgress,
  mode?: number,
): Promise<number> {
  const body = await sandbox.files.read(from, { format: "stream" });
  let bytes = 0;
  const counted = async function* () {
    for await (const chunk of progress.count(body as AsyncIterable<Uint8Array>)) {
      bytes += chunk.length;
      yield chunk;
    }
  };
  if (typeof to === "string") {
    await pipeline(counted(), createWriteStream(to));
    if (mode !== undefined) await chmod(to, mode);
  } else {
    await pipeline(counted(), to, { end: false });
  }
  return bytes;
}

/** Finds a path's entry by listing its parent directory, or `undefined` when it does not exist. */
async function remoteEntry(sandbox: Sandbox, remote: string): Promise<FileEntry | undefined> {
  const normalized = path.posix.normalize(remote).replace(/(.)\/+$/, "$1");
  if (normalized === "/") {
    return { name: "/", path: "/", type: "dir", size: 0, mode: "0755", mtime: new Date(0).toISOString() };
  }
  try {
    const entries = await sandbox.files.list(path.posix.dirname(normalized));
    return entries.find((e) => e.name === path.posix.basename(normalized));
  } catch (err) {
    // A missing parent, or a parent that is a file, means the path does not exist.
    if (err instanceof FileNotFoundError || (err instanceof SandpitError && err.code === "bad_request")) {
      return undefined;
    }
    throw err;
  }
}

function parseMode(mode: string): number {
  const bits = Number.parseInt(mode, 8);
  return Number.isNaN(bits) ? 0o644 : bits & 0o777;
}

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
