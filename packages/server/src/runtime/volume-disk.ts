import { chmod, mkdir, rm, statfs } from "node:fs/promises";
import path from "node:path";
import { runCommand, tryCommand } from "../lib/run-command.js";
import { makeExt4Image } from "./ext4-image.js";
import { mountsBeneath } from "./volume-mounts.js";

/**
 * The storage of a named volume: a sparse ext4 image of the volume's size, loop-mounted on the host, so
 * that `sizeMb` is a hard limit (ENOSPC inside the sandboxes) and one organisation's volume cannot fill
 * the host. Sandboxes see `data/` (the filesystem root also holds ext4's lost+found).
 */
export class VolumeDisk {
  readonly image: string;
  readonly mountPoint: string;
  /** The directory sandboxes mount. */
  readonly data: string;

  constructor(readonly dir: string) {
    this.image = path.join(dir, "disk.img");
    this.mountPoint = path.join(dir, "fs");
    this.data = path.join(this.mountPoint, "data");
  }

  async create(sizeMb: number): Promise<void> {
    await mkdir(this.mountPoint, { recursive: true });
    await makeExt4Image(this.image, sizeMb);
    await this.mount();
    await mkdir(this.data, { recursive: true });
    // Shared by sandboxes that run as different users.
    await chmod(this.data, 0o777);
  }

  private async mounted(): Promise<boolean> {
    return (await mountsBeneath(this.mountPoint)).includes(this.mountPoint);
  }

  /** Mounts the image unless it is mounted (after a host reboot, or on a server's first start). */
  async mount(): Promise<void> {
    if (await this.mounted()) return;
    await runCommand(["mount", "-o", "loop,noatime,nosuid,nodev", this.image, this.mountPoint]);
  }

  /** Bytes in use on the volume's filesystem (its own metadata included). */
  async usedBytes(): Promise<number | null> {
    if (!(await this.mounted())) return null;
    const s = await statfs(this.mountPoint);
    return (s.blocks - s.bfree) * s.bsize;
  }

  /** Unmounts and deletes the volume with its files. */
  async remove(): Promise<void> {
    await tryCommand(["umount", this.mountPoint]);
    if (await this.mounted()) await runCommand(["umount", "-l", this.mountPoint]);
    await rm(this.dir, { recursive: true, force: true });
  }
}
