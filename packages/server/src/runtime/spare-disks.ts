import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { runCommand, tryCommand } from "../lib/run-command.js";
import { makeExt4Image } from "./ext4-image.js";

/**
 * Empty formatted disk images kept ready and mounted, per size: making one (truncate + mkfs) and its
 * loop mount (~45-90 ms on a loaded 2-core host) are otherwise on every create's critical path. A create
 * claims a ready spare by renaming its marker (atomic: a spare is never handed out twice), takes its image
 * by rename and its filesystem by a bind mount, and the pool is refilled in the background once the create
 * has had time to boot (mkfs and mount would take its CPU). Each spare is a few MB on the host (sparse) and
 * a loop device. Sizes other than the first few seen are made on demand only.
 *
 * A spare `<name>` is `<name>.img`, its filesystem mounted at `<name>.mnt` and, once both are complete,
 * the marker `<name>.ready`.
 */
/** A refill starts this long after the take that emptied a spare: past a create's boot on a quiet host. */
const REFILL_DELAY_MS = 1000;

export class SpareDisks {
  private readonly refills = new Map<number, Promise<void>>();
  private readonly refillTimers = new Map<number, NodeJS.Timeout>();
  private readonly sizes = new Set<number>();
  /** Unmounts of taken spares' own mount points, done off the create's path. */
  private readonly releases = new Set<Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly perSize = 4,
    private readonly maxSizes = 3,
  ) {}

  /** Drops what an earlier run left (possibly half-made or still mounted spares): the pool refills on use. */
  async reset(): Promise<void> {
    for (const point of await mountsUnder(this.dir)) await tryCommand(["umount", "-l", point]);
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * Puts an empty disk image of `sizeMb` at `image` with its filesystem mounted at `mountPoint` (an
   * existing empty directory): a ready spare when there is one, else a new one.
   */
  async take(sizeMb: number, image: string, mountPoint: string): Promise<void> {
    const dir = this.sizeDir(sizeMb);
    let spare: string | undefined;
    for (const marker of await this.ready(dir)) {
      const claimed = await rename(path.join(dir, marker), path.join(dir, `${marker}.taken`)).then(
        () => true,
        () => false, // taken by a concurrent create meanwhile
      );
      if (claimed) {
        spare = path.join(dir, marker.replace(/\.ready$/, ""));
        break;
      }
    }
    if (spare) {
      await rename(`${spare}.img`, image);
      await runCommand(["mount", "--bind", `${spare}.mnt`, mountPoint]);
      this.release(spare);
    } else {
      await makeExt4Image(image, sizeMb);
      await mountDisk(image, mountPoint);
    }
    this.refillSoon(sizeMb);
  }

  /** Starts the refills that are waiting and waits for them and for releases (tests, shutdown). */
  async idle(): Promise<void> {
    for (const [sizeMb, timer] of this.refillTimers) {
      clearTimeout(timer);
      this.refillTimers.delete(sizeMb);
      this.refill(sizeMb);
    }
    await Promise.all([...this.refills.values(), ...this.releases]);
  }

  private refillSoon(sizeMb: number) {
    if (this.refillTimers.has(sizeMb)) return;
    const timer = setTimeout(() => {
      this.refillTimers.delete(sizeMb);
      this.refill(sizeMb);
    }, REFILL_DELAY_MS);
    timer.unref();
    this.refillTimers.set(sizeMb, timer);
  }

  private sizeDir(sizeMb: number) {
    return path.join(this.dir, String(sizeMb));
  }

  private async ready(dir: string): Promise<string[]> {
    return (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(".ready"));
  }

  /** The filesystem stays mounted through the create's bind mount; the spare's own mount point goes. */
  private release(spare: string) {
    const release = (async () => {
      await tryCommand(["umount", "-l", `${spare}.mnt`]);
      await rmdir(`${spare}.mnt`).catch(() => undefined);
      await rm(`${spare}.ready.taken`, { force: true });
    })().finally(() => this.releases.delete(release));
    this.releases.add(release);
  }

  private refill(sizeMb: number) {
    if (!this.sizes.has(sizeMb) && this.sizes.size >= this.maxSizes) return;
    this.sizes.add(sizeMb);
    if (this.refills.has(sizeMb)) return;
    const dir = this.sizeDir(sizeMb);
    const run = async () => {
      await mkdir(dir, { recursive: true });
      while ((await this.ready(dir)).length < this.perSize) {
        // Marked ready only once its image and mount are complete: a half-made spare is never taken.
        const spare = path.join(dir, randomUUID());
        await makeExt4Image(`${spare}.img`, sizeMb);
        await mkdir(`${spare}.mnt`);
        await mountDisk(`${spare}.img`, `${spare}.mnt`);
        await writeFile(`${spare}.ready`, "");
      }
    };
    const refill = run()
      .catch(() => undefined)
      .finally(() => this.refills.delete(sizeMb));
    this.refills.set(sizeMb, refill);
  }
}

/** Loop-mounts a disk image at `mountPoint`, with the overlay's upper and work directories made. */
export async function mountDisk(image: string, mountPoint: string): Promise<void> {
  await runCommand(["mount", "-o", "loop,noatime", image, mountPoint]);
  await mkdir(path.join(mountPoint, "upper"), { recursive: true });
  await mkdir(path.join(mountPoint, "work"), { recursive: true });
}

/** Mount points at or below `dir`, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return table
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}
