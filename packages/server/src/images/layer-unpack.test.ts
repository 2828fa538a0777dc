import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LayerUnpackError, layerRelativePath, unpackLayer, whiteoutOf } from "./layer-unpack.js";

/** One member of a hand-made ustar archive (for members GNU tar would refuse to write). */
interface Member {
  name: string;
  type?: "0" | "1" | "2" | "5" | "3";
  content?: string;
  link?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, "0")}\0`;
}

function ustar(members: Member[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const content = Buffer.from(m.content ?? "");
    const header = Buffer.alloc(512);
    header.write(m.name, 0, 100, "utf8");
    header.write(octal(m.mode ?? 0o644, 8), 100, "latin1");
    header.write(octal(m.uid ?? 0, 8), 108, "latin1");
    header.write(octal(m.gid ?? 0, 8), 116, "latin1");
    header.write(octal(content.length, 12), 124, "latin1");
    header.write(octal(1_700_000_000, 12), 136, "latin1");
    header.write("        ", 148, "latin1");
    header.write(m.type ?? "0", 156, "latin1");
    header.write(m.link ?? "", 157, 100, "utf8");
    header.write("ustar\u000000", 257, "latin1");
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    blocks.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

async function* once(buf: Buffer): AsyncGenerator<Buffer> {
  // Odd-sized pieces, so that block boundaries fall inside chunks.
  for (let i = 0; i < buf.length; i += 777) yield buf.subarray(i, i + 777);
}

let work: string;
let root: string;
beforeEach(async () => {
  work = mkdtempSync("/var/tmp/sandpit-unpack-test-");
  root = path.join(work, "layer");
  await mkdir(root);
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

describe("layer paths and whiteouts", () => {
  it("keeps paths inside the layer", () => {
    expect(layerRelativePath("./usr/bin/env")).toBe("usr/bin/env");
    expect(layerRelativePath("/etc/passwd")).toBe("etc/passwd");
    expect(layerRelativePath("a/b/../c/")).toBe("a/c");
    expect(() => layerRelativePath("../etc/passwd")).toThrow(LayerUnpackError);
    expect(() => layerRelativePath("a/../../x")).toThrow(LayerUnpackError);
  });

  it("reads OCI whiteouts", () => {
    expect(whiteoutOf("data/.wh.gone.txt")).toEqual({ kind: "delete", target: "data/gone.txt" });
    expect(whiteoutOf(".wh.top")).toEqual({ kind: "delete", target: "top" });
    expect(whiteoutOf("opt/dir/.wh..wh..opq")).toEqual({ kind: "opaque", dir: "opt/dir" });
    expect(whiteoutOf("x/.wh..wh.plnk")).toBeNull();
    expect(whiteoutOf("x/normal")).toBeNull();
  });
});

describe("unpackLayer", () => {
  it("keeps owners, modes and links, and turns whiteouts into overlayfs' form", async () => {
    const tar = ustar([
      { name: "bin/", type: "5", mode: 0o755 },
      { name: "bin/tool", content: "#!/bin/sh\n", mode: 0o4755, uid: 0 },
      { name: "home/app/", type: "5", mode: 0o700, uid: 1000, gid: 1000 },
      { name: "home/app/notes.txt", content: "hi", mode: 0o600, uid: 1000, gid: 1000 },
      { name: "usr/bin/sh", type: "2", link: "/bin/busybox" },
      { name: "bin/tool2", type: "1", link: "bin/tool" },
      { name: "data/.wh.gone.txt" },
      { name: "opt/dir/.wh..wh..opq" },
      { name: "opt/dir/new", content: "new" },
      { name: "dev/null", type: "3" },
    ]);
    const result = await unpackLayer(once(tar), root);
    expect(result).toMatchObject({ whiteouts: 1, opaqueDirs: 1, skippedDevices: 1 });
    const tool = lstatSync(path.join(root, "bin/tool"));
    expect(tool.mode & 0o7777).toBe(0o4755);
    expect(lstatSync(path.join(root, "bin/tool2")).ino).toBe(tool.ino);
    const home = lstatSync(path.join(root, "home/app"));
    expect([home.uid, home.gid, home.mode & 0o777]).toEqual([1000, 1000, 0o700]);
    expect(readFileSync(path.join(root, "home/app/notes.txt"), "utf8")).toBe("hi");
    expect(readlinkSync(path.join(root, "usr/bin/sh"))).toBe("/bin/busybox");
    const whiteout = lstatSync(path.join(root, "data/gone.txt"));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    const opaque = execFileSync("getfattr", [
      "-h",
      "--only-values",
      "-n",
      "trusted.overlay.opaque",
      path.join(root, "opt/dir"),
    ]);
    expect(opaque.toString()).toBe("y");
    expect(() => lstatSync(path.join(root, "dev/null"))).toThrow();
  });

  it("refuses members that leave the root or write through a symlink", async () => {
    await expect(unpackLayer(once(ustar([{ name: "../escape", content: "x" }])), root)).rejects.toThrow(
      /leaves the layer's root/,
    );
    await expect(
      unpackLayer(
        once(
          ustar([
            { name: "evil", type: "2", link: "/" },
            { name: "evil/etc/x", content: "x" },
          ]),
        ),
        root,
      ),
    ).rejects.toThrow(/not a directory in this layer/);
    rmSync(root, { recursive: true, force: true });
    await mkdir(root);
    await expect(
      unpackLayer(once(ustar([{ name: "passwd", type: "1", link: "../../etc/passwd" }])), root),
    ).rejects.toThrow(/leaves the layer's root/);
    await expect(unpackLayer(once(ustar([{ name: "hl", type: "1", link: "missing" }])), root)).rejects.toThrow(
      /not a file of this layer/,
    );
  });

  it("lets a later member replace an earlier one", async () => {
    const tar = ustar([
      { name: "a", content: "first" },
      { name: "a", type: "5", mode: 0o755 },
      { name: "a/b", content: "inside" },
    ]);
    await unpackLayer(once(tar), root);
    expect(readFileSync(path.join(root, "a/b"), "utf8")).toBe("inside");
  });
});
