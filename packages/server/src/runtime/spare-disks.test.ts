import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpareDisks } from "./spare-disks.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "sandpit-spares-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const isExt4 = (image: string) => execFileSync("blkid", ["-o", "value", "-s", "TYPE", image]).toString().trim();

describe("spare disk images", () => {
  it("makes a disk when none is ready, then keeps spares of that size for the next creates", async () => {
    const spares = new SpareDisks(path.join(dir, "pool"), 2);
    const first = path.join(dir, "first.img");
    await spares.take(64, first);
    expect(statSync(first).size).toBe(64 * 1024 * 1024);
    expect(isExt4(first)).toBe("ext4");
    await spares.idle();
    expect(readdirSync(path.join(dir, "pool", "64")).filter((n) => n.endsWith(".img"))).toHaveLength(2);
  });

  it("never hands one image to two concurrent creates", async () => {
    const spares = new SpareDisks(path.join(dir, "race"), 2);
    await spares.take(64, path.join(dir, "warm.img"));
    await spares.idle();
    const targets = [1, 2, 3, 4, 5].map((i) => path.join(dir, `race-${i}.img`));
    await Promise.all(targets.map((t) => spares.take(64, t)));
    for (const t of targets) expect(isExt4(t)).toBe("ext4");
    const inodes = new Set(targets.map((t) => statSync(t).ino));
    expect(inodes.size).toBe(5);
    await spares.idle();
  });

  it("starts afresh: what an earlier run left is dropped", async () => {
    const spares = new SpareDisks(path.join(dir, "pool"), 2);
    await spares.reset();
    expect(existsSync(path.join(dir, "pool"))).toBe(false);
    const target = path.join(dir, "after-reset.img");
    await spares.take(128, target);
    expect(statSync(target).size).toBe(128 * 1024 * 1024);
    await spares.idle();
  });
});
