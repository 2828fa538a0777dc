import { constants } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir, readFile, rmdir } from "node:fs/promises";
import path from "node:path";
import { runCommand, tryCommand } from "../lib/run-command.js";

/**
 * A host directory to bind into a sandbox: `subPath` beneath a trusted `root` (a volume's data
 * directory, or a host prefix the admin allows). Everything beneath `root` may be written by sandboxes,
 * so it is walked without following symlinks.
 */
export interface VolumeMountSpec {
  root: string;
  /** Relative path beneath root ("" for root itself). */
  subPath: string;
  /** Create the directories of subPath that are missing. */
  create: boolean;
  /** Absolute path inside the sandbox. */
  destination: string;
  readOnly: boolean;
}

/** A staged mount: a host directory that no sandbox can redirect, and where it appears inside. */
export interface StagedMount {
  source: string;
  destination: string;
  readOnly: boolean;
}

/** A mount's directory cannot be used: it goes through a symlink, is not a directory, or is missing. */
export class VolumeMountError extends Error {
  constructor(
    /** Index of the mount in the list it came from. */
    readonly index: number,
    message: string,
  ) {
    super(message);
  }
}

/** A walk beneath a root stopped: a component is a symlink, not a directory, or missing. */
export class BeneathError extends Error {
  constructor(
    readonly reason: "symlink" | "not_directory" | "missing",
    message: string,
  ) {
    super(message);
  }
}

const DIRECTORY_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * Opens `subPath` beneath `root` one component at a time, each relative to the directory opened before
 * it (through /proc/self/fd) and with O_NOFOLLOW: a symlink anywhere beneath root fails the walk instead
 * of leading out of it, and a directory swapped for a symlink halfway through cannot redirect it.
 * Missing directories are created (mode 0777: shared by sandboxes running as different users).
 */
export async function openDirBeneath(root: string, subPath: string, opts: { create: boolean }): Promise<FileHandle> {
  let dir = await open(root, constants.O_RDONLY | constants.O_DIRECTORY);
  let walked = "";
  try {
    for (const component of subPath.split("/")) {
      if (component === "" || component === ".") continue;
      if (component === "..") throw new Error(`${subPath}: must not contain '..'`);
      walked = walked ? `${walked}/${component}` : component;
      const next = `/proc/self/fd/${dir.fd}/${component}`;
      if (opts.create) {
        const made = await mkdir(next, { mode: 0o777 }).then(
          () => true,
          (e: NodeJS.ErrnoException) => {
            if (e.code !== "EEXIST") throw e;
            return false;
          },
        );
        const child = await openComponent(next, walked);
        // mkdir's mode is reduced by the umask; the directory is meant for every user of the sandboxes.
        if (made) await child.chmod(0o777);
        await dir.close();
        dir = child;
      } else {
        const child = await openComponent(next, walked);
        await dir.close();
        dir = child;
      }
    }
    return dir;
  } catch (e) {
    await dir.close();
    throw e;
  }
}

async function openComponent(procPath: string, walked: string): Promise<FileHandle> {
  try {
    return await open(procPath, DIRECTORY_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // O_NOFOLLOW|O_DIRECTORY on a symlink fails with ENOTDIR (or ELOOP): tell the two cases apart.
    const isLink = await lstat(procPath).then(
      (s) => s.isSymbolicLink(),
      () => false,
    );
    if (code === "ELOOP" || isLink)
      throw new BeneathError("symlink", `${walked} is a symlink; mounts do not follow symlinks`);
    if (code === "ENOTDIR") throw new BeneathError("not_directory", `${walked} is not a directory`);
    if (code === "ENOENT") throw new BeneathError("missing", `${walked} does not exist`);
    throw e;
  }
}

/**
 * Binds every mount's directory onto `stagingDir/<index>` on the host (read-only there too when the
 * mount is), from an open descriptor rather than a path: what the sandbox gets is the directory that
 * was checked, whatever happens to paths afterwards. runsc then binds the staged directories.
 */
export async function stageMounts(stagingDir: string, specs: VolumeMountSpec[]): Promise<StagedMount[]> {
  const staged: StagedMount[] = [];
  for (const [index, spec] of specs.entries()) {
    let dir: FileHandle;
    try {
      dir = await openDirBeneath(spec.root, spec.subPath, { create: spec.create });
    } catch (e) {
      throw new VolumeMountError(index, e instanceof Error ? e.message : String(e));
    }
    const target = path.join(stagingDir, String(index));
    try {
      await mkdir(target, { recursive: true });
      // --no-canonicalize: mount(8) would otherwise turn the descriptor back into a path.
      await runCommand(["mount", "--no-canonicalize", "--bind", `/proc/${process.pid}/fd/${dir.fd}`, target]);
      if (spec.readOnly) await runCommand(["mount", "--no-canonicalize", "-o", "remount,bind,ro", target]);
    } finally {
      await dir.close();
    }
    staged.push({ source: target, destination: spec.destination, readOnly: spec.readOnly });
  }
  return staged;
}

/** Mount points at or beneath `dir`, deepest first (from this process's mount table). */
export async function mountsBeneath(dir: string): Promise<string[]> {
  const table = await readFile("/proc/self/mountinfo", "utf8");
  const points = table
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts a sandbox's staged mounts and removes their directories. Never deletes recursively: a
 * directory that is still a mount point keeps the volume's files out of reach of any removal.
 */
export async function releaseMounts(stagingDir: string): Promise<void> {
  for (const point of await mountsBeneath(stagingDir)) await tryCommand(["umount", "-l", point]);
  const left = await mountsBeneath(stagingDir);
  if (left.length > 0) throw new Error(`could not unmount ${left.join(", ")}`);
  for (const entry of await readdir(stagingDir).catch(() => [] as string[])) {
    await rmdir(path.join(stagingDir, entry)).catch(() => undefined);
  }
  await rmdir(stagingDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
}
