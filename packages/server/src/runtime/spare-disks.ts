import { randomUUID } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { makeExt4Image } from "./ext4-image.js";

/**
 * Empty formatted disk images kept ready, per size: making one (truncate + mkfs) is otherwise on every
 * create's critical path. A create takes a ready image by renaming it into place (an image is never handed
 * out twice: rename is atomic) and the pool is refilled in the background. Each image is a few MB on the
 * host (sparse). Sizes other than the first few seen are made on demand only.
 */
export class SpareDisks {
  private readonly refills = new Map<number, Promise<void>>();
  private readonly sizes = new Set<number>();

  constructor(
    private readonly dir: string,
    private readonly perSize = 2,
    private readonly maxSizes = 3,
  ) {}

  /** Drops what an earlier run left (possibly half-made images): the pool refills itself on use. */
  async reset(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Puts an empty disk image of `sizeMb` at `target`: a ready one when there is one, else a new one. */
  async take(sizeMb: number, target: string): Promise<void> {
    const dir = this.sizeDir(sizeMb);
    let taken = false;
    for (const name of await this.ready(dir)) {
      taken = await rename(path.join(dir, name), target).then(
        () => true,
        () => false, // taken by a concurrent create meanwhile
      );
      if (taken) break;
    }
    if (!taken) await makeExt4Image(target, sizeMb);
    this.refill(sizeMb);
  }

  /** Waits for background refills (tests, shutdown). */
  async idle(): Promise<void> {
    await Promise.all(this.refills.values());
  }

  private sizeDir(sizeMb: number) {
    return path.join(this.dir, String(sizeMb));
  }

  private async ready(dir: string): Promise<string[]> {
    return (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(".img"));
  }

  private refill(sizeMb: number) {
    if (!this.sizes.has(sizeMb) && this.sizes.size >= this.maxSizes) return;
    this.sizes.add(sizeMb);
    if (this.refills.has(sizeMb)) return;
    const dir = this.sizeDir(sizeMb);
    const run = async () => {
      await mkdir(dir, { recursive: true });
      while ((await this.ready(dir)).length < this.perSize) {
        // Made under another name, so that a half-made image is never taken.
        const partial = path.join(dir, `${randomUUID()}.partial`);
        await makeExt4Image(partial, sizeMb);
        await rename(partial, partial.replace(/\.partial$/, ".img"));
      }
    };
    const refill = run()
      .catch(() => undefined)
      .finally(() => this.refills.delete(sizeMb));
    this.refills.set(sizeMb, refill);
  }
}
