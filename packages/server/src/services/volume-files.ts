import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir, readlink, rename, rmdir, unlink } from "node:fs/promises";
import type { Readable } from "node:stream";
import { ApiError } from "../errors.js";
import { BeneathError, openDirBeneath } from "../runtime/volume-mounts.js";

/** One file, directory or symlink of a volume, as its files API shows it. */
export interface VolumeEntry {
  name: string;
  /** Absolute path inside the volume ("/" is its root). */
  path: string;
  type: "file" | "directory" | "symlink" | "unknown";
  size: number;
  /** Permission bits (0o777 at most). */
  mode: number;
  uid: number;
  gid: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
  /** Where a symlink points (never followed). */
  target?: string;
}

/** Owner and permissions to give an entry; anything left out keeps its value (or the default). */
export interface VolumeEntryOwnership {
  uid?: number | undefined;
  gid?: number | undefined;
  mode?: number | undefined;
}

/** Listings go this many levels deep at most. */
export const MAX_LIST_DEPTH = 32;
/** New files and directories: usable by every user of the sandboxes that mount the volume. */
const DEFAULT_FILE_MODE = 0o666;
const DEFAULT_DIR_MODE = 0o777;
/** Opens that never follow a final symlink and never block on a FIFO a sandbox planted. */
const NO_FOLLOW = constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** `/a//b/./c` → ["a", "b", "c"]; `..`, NUL and non-absolute paths are refused. */
export function volumePathComponents(path: string): string[] {
  if (!path.startsWith("/")) throw badPath(path, "must be an absolute path inside the volume");
  if (path.includes("\0")) throw badPath(path, "must not contain NUL");
  const components = path.split("/").filter((c) => c !== "" && c !== ".");
  if (components.includes("..")) throw badPath(path, "must not contain '..'");
  return components;
}

function badPath(path: string, message: string) {
  return new ApiError("validation_failed", `Invalid request: path: ${message}`, {
    fields: [{ field: "path", rule: "invalid_path", message }],
    path,
  });
}

const display = (components: string[]) => `/${components.join("/")}`;

function typeOf(s: Stats): VolumeEntry["type"] {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "directory";
  if (s.isSymbolicLink()) return "symlink";
  return "unknown";
}

/** Errors of the host's file calls as API errors naming the volume path. */
function fileError(e: unknown, path: string): never {
  if (e instanceof ApiError) throw e;
  if (e instanceof BeneathError) {
    if (e.reason === "missing") throw new ApiError("file_not_found", `${path}: ${e.message}`);
    throw new ApiError("bad_request", `${path}: ${e.message.replace("mounts do not", "volume paths do not")}`);
  }
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      throw new ApiError("file_not_found", `${path}: no such file or directory`);
    case "ELOOP":
      throw new ApiError("bad_request", `${path} is a symlink; volume paths do not follow symlinks`);
    case "EEXIST":
      throw new ApiError("conflict", `${path} already exists`);
    case "ENOTDIR":
      throw new ApiError("bad_request", `${path}: a path component is not a directory`);
    case "EISDIR":
      throw new ApiError("bad_request", `${path} is a directory`);
    case "ENOSPC":
    case "EDQUOT":
      throw new ApiError("insufficient_storage", `${path}: the volume is full`);
    case "EACCES":
    case "EPERM":
      throw new ApiError("forbidden", `${path}: permission denied`);
    case "ENXIO":
      throw new ApiError("bad_request", `${path} is not a regular file`);
    default:
      throw e;
  }
}

/**
 * The files of one volume, read and written on the host where its disk is mounted. Sandboxes write
 * into the same directory at the same time, so every path is walked one component at a time from the
 * volume's root with O_NOFOLLOW (`openDirBeneath`), and the last component is opened or changed
 * relative to its parent's descriptor and never followed: a symlink — planted before or swapped in
 * during a call — fails the call instead of leading it out of the volume.
 */
export class VolumeFiles {
  constructor(
    /** The volume's data directory on the host (trusted: made by the server, outside the sandboxes' reach). */
    private readonly root: string,
  ) {}

  /** Runs `fn` on the last component of `path`, relative to its open parent directory. */
  private async inParent<T>(
    components: string[],
    opts: { create: boolean },
    fn: (entryPath: string, name: string, parent: FileHandle) => Promise<T>,
  ): Promise<T> {
    const path = display(components);
    const name = components.at(-1);
    if (name === undefined) throw new ApiError("bad_request", "/ is the volume's root");
    let parent: FileHandle;
    try {
      parent = await openDirBeneath(this.root, components.slice(0, -1).join("/"), opts);
    } catch (e) {
      fileError(e, path);
    }
    try {
      return await fn(`/proc/self/fd/${parent.fd}/${name}`, name, parent);
    } catch (e) {
      fileError(e, path);
    } finally {
      await parent.close();
    }
  }

  private async entryAt(entryPath: string, components: string[]): Promise<VolumeEntry> {
    const s = await lstat(entryPath);
    const target = s.isSymbolicLink() ? await readlink(entryPath) : undefined;
    return entryOf(s, components, target);
  }

  async stat(path: string): Promise<VolumeEntry> {
    const components = volumePathComponents(path);
    if (components.length === 0) {
      const root = await openDirBeneath(this.root, "", { create: false });
      try {
        return entryOf(await root.stat(), [], undefined);
      } finally {
        await root.close();
      }
    }
    return this.inParent(components, { create: false }, (entryPath) => this.entryAt(entryPath, components));
  }

  /** The entries of a directory, and of its subdirectories down to `depth` levels (1: the directory only). */
  async list(path: string, depth: number): Promise<VolumeEntry[]> {
    const components = volumePathComponents(path);
    let dir: FileHandle;
    try {
      dir = await openDirBeneath(this.root, components.join("/"), { create: false });
    } catch (e) {
      fileError(e, display(components));
    }
    const entries: VolumeEntry[] = [];
    try {
      await this.walk(dir, components, Math.min(depth, MAX_LIST_DEPTH), entries);
    } catch (e) {
      fileError(e, display(components));
    } finally {
      await dir.close();
    }
    return entries;
  }

  private async walk(dir: FileHandle, components: string[], depth: number, out: VolumeEntry[]): Promise<void> {
    const dirPath = `/proc/self/fd/${dir.fd}`;
    for (const name of (await readdir(dirPath)).sort()) {
      const entryPath = `${dirPath}/${name}`;
      // Gone between readdir and lstat (a sandbox removed it): not an entry any more.
      const entry = await this.entryAt(entryPath, [...components, name]).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (!entry) continue;
      out.push(entry);
      if (entry.type !== "directory" || depth <= 1) continue;
      // Opened beneath this directory's descriptor with O_NOFOLLOW: swapped for a symlink, it is skipped.
      const child = await openDirBeneath(dirPath, name, { create: false }).catch(() => undefined);
      if (!child) continue;
      try {
        await this.walk(child, [...components, name], depth - 1, out);
      } finally {
        await child.close();
      }
    }
  }

  /**
   * Makes a directory; 409 when it exists. With `parents` (mkdir -p) the missing parents are made too
   * and an existing directory is no error (it keeps its owner and mode unless they are given).
   */
  async makeDir(path: string, opts: VolumeEntryOwnership & { parents: boolean }): Promise<VolumeEntry> {
    const components = volumePathComponents(path);
    return this.inParent(components, { create: opts.parents }, async (entryPath) => {
      const made = await mkdir(entryPath).then(
        () => true,
        (e: NodeJS.ErrnoException) => {
          if (e.code !== "EEXIST" || !opts.parents) throw e;
          return false;
        },
      );
      // O_NOFOLLOW: an existing "directory" that is a symlink fails here.
      const dir = await open(entryPath, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      try {
        await applyOwnership(dir, made ? { ...opts, mode: opts.mode ?? DEFAULT_DIR_MODE } : opts);
        return entryOf(await dir.stat(), components, undefined);
      } finally {
        await dir.close();
      }
    });
  }

  /** A regular file's content; symlinks, directories and special files are refused. */
  async read(path: string): Promise<{ size: number; stream: Readable }> {
    const components = volumePathComponents(path);
    return this.inParent(components, { create: false }, async (entryPath) => {
      const file = await open(entryPath, constants.O_RDONLY | NO_FOLLOW);
      try {
        const s = await file.stat();
        if (s.isDirectory()) throw new ApiError("bad_request", `${display(components)} is a directory`);
        if (!s.isFile()) throw new ApiError("bad_request", `${display(components)} is not a regular file`);
        // The stream closes the file when it ends or is destroyed.
        return { size: s.size, stream: file.createReadStream() };
      } catch (e) {
        await file.close();
        throw e;
      }
    });
  }

  /**
   * Writes a regular file from `body`, replacing what it held; missing parent directories are made. The
   * content goes to a temporary file beside it that replaces the file only once the body has fully
   * arrived: a body that fails (over the upload limit, cut off) leaves the old file as it was and no
   * partial one. A new file gets mode 0666 unless `mode` says otherwise; a replaced one keeps its owner
   * and mode unless they are given.
   */
  async write(path: string, body: Readable, opts: VolumeEntryOwnership): Promise<VolumeEntry> {
    const components = volumePathComponents(path);
    return this.inParent(components, { create: true }, async (entryPath, _name, parent) => {
      const existing = await lstat(entryPath).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (existing?.isSymbolicLink()) {
        throw new ApiError("bad_request", `${display(components)} is a symlink; volume paths do not follow symlinks`);
      }
      if (existing?.isDirectory()) throw new ApiError("bad_request", `${display(components)} is a directory`);
      if (existing && !existing.isFile()) {
        throw new ApiError("bad_request", `${display(components)} is not a regular file`);
      }
      const tempPath = `/proc/self/fd/${parent.fd}/.sandpit-upload.${randomBytes(8).toString("hex")}`;
      const file = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NO_FOLLOW, 0o600);
      let renamed = false;
      try {
        for await (const chunk of body) await writeAll(file, typeof chunk === "string" ? Buffer.from(chunk) : chunk);
        await applyOwnership(
          file,
          existing
            ? { uid: opts.uid ?? existing.uid, gid: opts.gid ?? existing.gid, mode: opts.mode ?? existing.mode }
            : { ...opts, mode: opts.mode ?? DEFAULT_FILE_MODE },
        );
        // Replaces whatever the name holds now, never following it (a symlink swapped in is replaced).
        await rename(tempPath, entryPath);
        renamed = true;
        return entryOf(await file.stat(), components, undefined);
      } finally {
        await file.close();
        if (!renamed) await unlink(tempPath).catch(() => undefined);
      }
    });
  }

  /** Removes a file, a symlink (never what it points to) or a directory with everything in it. */
  async remove(path: string): Promise<void> {
    const components = volumePathComponents(path);
    await this.inParent(components, { create: false }, async (entryPath, name, parent) => {
      const s = await lstat(entryPath);
      if (s.isDirectory()) await removeTree(parent, name);
      else await unlink(entryPath);
    });
  }

  /** Changes owner and permissions; symlinks are refused (they have none of their own to change). */
  async setOwnership(path: string, opts: VolumeEntryOwnership): Promise<VolumeEntry> {
    const components = volumePathComponents(path);
    if (components.length === 0) throw new ApiError("bad_request", "/ is the volume's root");
    return this.inParent(components, { create: false }, async (entryPath) => {
      const handle = await open(entryPath, constants.O_RDONLY | NO_FOLLOW);
      try {
        await applyOwnership(handle, opts);
        return entryOf(await handle.stat(), components, undefined);
      } finally {
        await handle.close();
      }
    });
  }
}

/** FileHandle.write may write less than it was given: the rest follows. */
async function writeAll(file: FileHandle, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    offset += (await file.write(data, offset, data.length - offset)).bytesWritten;
  }
}

function entryOf(s: Stats, components: string[], target: string | undefined): VolumeEntry {
  return {
    name: components.at(-1) ?? "",
    path: display(components),
    type: typeOf(s),
    size: s.size,
    mode: s.mode & 0o777,
    uid: s.uid,
    gid: s.gid,
    atime: s.atime,
    mtime: s.mtime,
    ctime: s.ctime,
    ...(target !== undefined ? { target } : {}),
  };
}

/**
 * Owner and permission bits on an open entry. Only the 0o777 bits: setuid/setgid files made through
 * the API would let a sandbox's unprivileged user run them as their owner.
 */
async function applyOwnership(handle: FileHandle, opts: VolumeEntryOwnership): Promise<void> {
  if (opts.uid !== undefined || opts.gid !== undefined) {
    const s = await handle.stat();
    await handle.chown(opts.uid ?? s.uid, opts.gid ?? s.gid);
  }
  if (opts.mode !== undefined) await handle.chmod(opts.mode & 0o777);
}

/**
 * Removes directory `name` beneath the open `parent` and everything in it, each step relative to an
 * open directory: a subdirectory swapped for a symlink halfway through is unlinked, never descended.
 */
async function removeTree(parent: FileHandle, name: string): Promise<void> {
  const dir = await openDirBeneath(`/proc/self/fd/${parent.fd}`, name, { create: false }).catch((e: unknown) => {
    // Swapped for a symlink or a file since it was looked at: remove that instead.
    if (e instanceof BeneathError && e.reason !== "missing") return undefined;
    throw e;
  });
  if (!dir) {
    await unlink(`/proc/self/fd/${parent.fd}/${name}`);
    return;
  }
  try {
    const dirPath = `/proc/self/fd/${dir.fd}`;
    for (const child of await readdir(dirPath)) {
      const s = await lstat(`${dirPath}/${child}`).catch(() => undefined);
      if (!s) continue;
      if (s.isDirectory()) await removeTree(dir, child);
      else
        await unlink(`${dirPath}/${child}`).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "ENOENT") throw e;
        });
    }
  } finally {
    await dir.close();
  }
  await rmdir(`/proc/self/fd/${parent.fd}/${name}`);
}
