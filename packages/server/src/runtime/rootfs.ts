import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { phase } from "../lib/phases.js";
import { runCommand, tryCommand } from "../lib/run-command.js";
import { makeExt4Image } from "./ext4-image.js";
import type { RootfsSeed } from "./runtime.js";
import { mountDisk, type SpareDisks } from "./spare-disks.js";

/** `inside` (an absolute path in the sandbox) under `root` on the host; throws when it would leave root. */
export function hostPathUnder(root: string, inside: string): string {
  const target = path.resolve(root, `.${path.posix.resolve("/", inside)}`);
  if (target !== root && !target.startsWith(`${root}/`)) throw new Error(`path ${inside} leaves the root`);
  return target;
}

/**
 * A sandbox's root filesystem: an overlay whose lower layers are read-only (the agent layer over the
 * template), and whose upper layer lives on a per-sandbox loop-mounted ext4 image of the sandbox's disk
 * size — so `diskMb` is a hard limit that gives ENOSPC instead of filling the host.
 */
export class SandboxRootfs {
  readonly diskImage: string;
  readonly diskMount: string;
  readonly upper: string;
  readonly work: string;
  readonly merged: string;

  constructor(readonly dir: string) {
    this.diskImage = path.join(dir, "disk.img");
    this.diskMount = path.join(dir, "disk");
    this.upper = path.join(this.diskMount, "upper");
    this.work = path.join(this.diskMount, "work");
    this.merged = path.join(dir, "rootfs");
  }

  /** `disk`: a new empty disk of that size, or a copy of another sandbox's disk image (snapshots). */
  async create(opts: {
    lowerDirs: string[];
    /** A new empty disk of that size (from `spares` when given), or a copy of another sandbox's disk. */
    disk: { sizeMb: number; spares?: SpareDisks } | { copyOf: string };
    files: Record<string, string>;
    /** Files only root may read (the agent's token, which the agent removes as it starts). */
    privateFiles?: Record<string, string>;
    seeds: RootfsSeed[];
  }): Promise<void> {
    await Promise.all([mkdir(this.diskMount, { recursive: true }), mkdir(this.merged, { recursive: true })]);
    const disk = opts.disk;
    await phase("rootfs.disk", async () => {
      if ("copyOf" in disk) {
        await runCommand(["cp", "--sparse=always", disk.copyOf, this.diskImage]);
        await mountDisk(this.diskImage, this.diskMount);
      } else if (disk.spares) {
        await disk.spares.take(disk.sizeMb, this.diskImage, this.diskMount);
      } else {
        await makeExt4Image(this.diskImage, disk.sizeMb);
        await mountDisk(this.diskImage, this.diskMount);
      }
    });
    // Independent files: written at the same time (each is a round trip through libuv's thread pool).
    const write = async (file: string, content: string, mode?: number) => {
      const target = path.join(this.upper, file);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, content, mode === undefined ? {} : { mode });
    };
    await phase("rootfs.files", () =>
      Promise.all([
        writeFile(path.join(this.dir, "layers.json"), JSON.stringify(opts.lowerDirs)),
        ...Object.entries(opts.files).map(([file, content]) => write(file, content)),
        ...Object.entries(opts.privateFiles ?? {}).map(([file, content]) => write(file, content, 0o600)),
      ]),
    );
    for (const seed of opts.seeds) await phase("rootfs.seeds", () => this.copySeed(seed));
    await phase("rootfs.overlay", () =>
      runCommand([
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${opts.lowerDirs.join(":")},upperdir=${this.upper},workdir=${this.work}`,
        this.merged,
      ]),
    );
  }

  /**
   * Copies a host directory into the upper layer, under the sandbox's disk limit. The copy is made as
   * plain files (no device nodes or xattrs from the source) and owned by the sandbox's user.
   */
  private async copySeed(seed: RootfsSeed): Promise<void> {
    const target = hostPathUnder(this.upper, seed.to);
    await mkdir(target, { recursive: true });
    try {
      await runCommand([
        "cp",
        "-R",
        "--no-preserve=ownership",
        "--preserve=mode,timestamps,links",
        "--",
        `${seed.from}/.`,
        target,
      ]);
    } catch (e) {
      if (/No space left on device/.test(String(e))) throw new SeedTooLargeError(seed.to);
      throw e;
    }
    await runCommand(["chown", "-R", "-h", `${seed.uid}:${seed.gid}`, "--", target]);
  }

  /** Flushes the disk so that a copy of its image is consistent (the sandbox must be stopped). */
  async sync(): Promise<void> {
    await runCommand(["sync", "-f", this.diskMount]);
  }

  async lowerDirs(): Promise<string[]> {
    return JSON.parse(await readFile(path.join(this.dir, "layers.json"), "utf8")) as string[];
  }

  /** Unmounts and deletes everything; safe to call on a partly created or already removed rootfs. */
  async remove(): Promise<void> {
    await tryCommand(["umount", "-l", this.merged]);
    await tryCommand(["umount", "-l", this.diskMount]);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A source's content does not fit the sandbox's disk. */
export class SeedTooLargeError extends Error {
  constructor(readonly to: string) {
    super(`the content for ${to} does not fit the sandbox's disk`);
  }
}
