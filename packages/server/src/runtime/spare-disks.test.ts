import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpareDisks } from "./spare-disks.js";

// Spares are loop-mounted: these tests need root, as the server does.
let dir: string;
const mounted: string[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "sandpit-spares-"));
});
afterAll(async () => {
  for (const point of mounted.reverse()) execFileSync("umount", ["-l", point]);
  for (const pool of ["pool", "race"]) await new SpareDisks(path.join(dir, pool)).reset();
  await rm(dir, { recursive: true, force: true });
});

const isExt4 = (image: string) => execFileSync("blkid", ["-o", "value", "-s", "TYPE", image]).toString().trim();

/** A new empty directory to mount a taken disk at (unmounted after the tests). */
function mountPoint(name: string): string {
  const point = path.join(dir, `${name}.mnt`);
  mkdirSync(point);
  mounted.push(point);
  return point;
}

/** The mount at `point` is a filesystem on the very file `image` (its inode), with the overlay's dirs. */
function expectMountedFrom(image: string, point: string) {
  const source = execFileSync("findmnt", ["-n", "-o", "SOURCE", point]).toString().trim();
  const backing = execFileSync("losetup", ["-n", "-O", "BACK-INO", source.replace(/\[.*$/, "")])
    .toString()
    .trim();
  expect(Number(backing)).toBe(statSync(image).ino);
  expect(existsSync(path.join(point, "upper"))).toBe(true);
  expect(existsSync(path.join(point, "work"))).toBe(true);
}

describe("spare disk images", () => {
  it("makes a disk when none is ready, then keeps mounted spares of that size for the next creates", async () => {
    const spares = new SpareDisks(path.join(dir, "pool"), 2);
    const first = path.join(dir, "first.img");
    await spares.take(64, first, mountPoint("first"));
    expect(statSync(first).size).toBe(64 * 1024 * 1024);
    expect(isExt4(first)).toBe("ext4");
    expectMountedFrom(first, path.join(dir, "first.mnt"));
    await spares.idle();
    expect(readdirSync(path.join(dir, "pool", "64")).filter((n) => n.endsWith(".ready"))).toHaveLength(2);
    const second = path.join(dir, "second.img");
    await spares.take(64, second, mountPoint("second"));
    // The refill waits until the create has booted: mkfs and mount would take its CPU.
    await new Promise((r) => setTimeout(r, 200));
    expect(readdirSync(path.join(dir, "pool", "64")).filter((n) => n.endsWith(".ready"))).toHaveLength(1);
    await spares.idle();
    // The spare's filesystem, now reached through the create's mount point only.
    expectMountedFrom(second, path.join(dir, "second.mnt"));
    expect(readdirSync(path.join(dir, "pool", "64")).filter((n) => n.endsWith(".ready"))).toHaveLength(2);
  });

  it("never hands one spare to two concurrent creates", async () => {
    const spares = new SpareDisks(path.join(dir, "race"), 2);
    await spares.take(64, path.join(dir, "warm.img"), mountPoint("warm"));
    await spares.idle();
    const targets = [1, 2, 3, 4, 5].map((i) => path.join(dir, `race-${i}.img`));
    await Promise.all(targets.map((t, i) => spares.take(64, t, mountPoint(`race-${i + 1}`))));
    for (const [i, t] of targets.entries()) {
      expect(isExt4(t)).toBe("ext4");
      expectMountedFrom(t, path.join(dir, `race-${i + 1}.mnt`));
    }
    const inodes = new Set(targets.map((t) => statSync(t).ino));
    expect(inodes.size).toBe(5);
    await spares.idle();
  });

  it("starts afresh: what an earlier run left is unmounted and dropped", async () => {
    const spares = new SpareDisks(path.join(dir, "pool"), 2);
    await spares.reset();
    expect(existsSync(path.join(dir, "pool"))).toBe(false);
    const target = path.join(dir, "after-reset.img");
    await spares.take(128, target, mountPoint("after-reset"));
    expect(statSync(target).size).toBe(128 * 1024 * 1024);
    await spares.idle();
  });
});
