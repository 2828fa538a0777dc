import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readLayerFile } from "./sandbox-origin.js";

let dir: string;
let hostSecret: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "sandpit-layers-"));
  hostSecret = path.join(dir, "host");
  await mkdir(hostSecret);
  await writeFile(path.join(hostSecret, "passwd"), "host-only:x:4242:4242::/:/bin/sh\n");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function layer(name: string, build: (root: string) => Promise<void>): Promise<string> {
  const root = path.join(dir, name);
  await mkdir(root, { recursive: true });
  await build(root);
  return root;
}

describe("reading a file of a template or image on the host", () => {
  it("takes the topmost layer's regular file", async () => {
    const lower = await layer("lower", async (r) => {
      await mkdir(path.join(r, "etc"));
      await writeFile(path.join(r, "etc/passwd"), "lower\n");
    });
    const upper = await layer("upper", async (r) => {
      await mkdir(path.join(r, "etc"));
      await writeFile(path.join(r, "etc/passwd"), "upper\n");
    });
    expect(await readLayerFile([upper, lower], "etc/passwd")).toBe("upper\n");
    expect(await readLayerFile([lower], "/etc/passwd")).toBe("lower\n");
    expect(await readLayerFile([lower], "etc/shadow")).toBeUndefined();
  });

  it("never follows a layer's symlinks to the host, in the last component or on the way", async () => {
    const linkedDir = await layer("linked-dir", (r) => symlink(hostSecret, path.join(r, "etc")));
    const linkedFile = await layer("linked-file", async (r) => {
      await mkdir(path.join(r, "etc"));
      await symlink(path.join(hostSecret, "passwd"), path.join(r, "etc/passwd"));
    });
    const lower = await layer("lower-ok", async (r) => {
      await mkdir(path.join(r, "etc"));
      await writeFile(path.join(r, "etc/passwd"), "lower\n");
    });
    expect(await readLayerFile([linkedDir], "etc/passwd")).toBeUndefined();
    expect(await readLayerFile([linkedFile], "etc/passwd")).toBeUndefined();
    // the upper layer's entry hides the lower file: it is not read through to the layer below either
    expect(await readLayerFile([linkedDir, lower], "etc/passwd")).toBeUndefined();
  });
});
