import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiError } from "../errors.js";
import { VolumeFiles, volumePathComponents } from "./volume-files.js";

let dir: string;
/** The volume's data directory. */
let root: string;
/** A directory beside the volume standing for the host's files. */
let outside: string;
let files: VolumeFiles;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "volume-files-"));
  root = path.join(dir, "data");
  outside = path.join(dir, "host");
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(path.join(outside, "secret.txt"), "host only\n");
  files = new VolumeFiles(root);
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function failure(p: Promise<unknown>): Promise<ApiError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
}

describe("VolumeFiles", () => {
  it("parses volume paths rooted at / and refuses '..', relative paths and NUL", async () => {
    expect(volumePathComponents("/a//b/./c/")).toEqual(["a", "b", "c"]);
    expect(volumePathComponents("/")).toEqual([]);
    for (const bad of ["a/b", "/a/../b", "/a\0b"]) {
      expect(() => volumePathComponents(bad)).toThrow(ApiError);
    }
    expect((await failure(files.stat("/../host/secret.txt"))).code).toBe("validation_failed");
  });

  it("writes, reads, stats, lists and removes files and directories", async () => {
    const written = await files.write("/a/b/hello.txt", Readable.from(["hello ", "volume\n"]), {});
    expect(written).toMatchObject({ name: "hello.txt", path: "/a/b/hello.txt", type: "file", size: 13, mode: 0o666 });
    expect(statSync(path.join(root, "a/b")).mode & 0o777).toBe(0o777);
    const { size, stream } = await files.read("/a/b/hello.txt");
    expect(size).toBe(13);
    expect(await text(stream)).toBe("hello volume\n");
    // A second write replaces the content and keeps the mode unless one is given.
    await files.write("/a/b/hello.txt", Readable.from(["short"]), {});
    expect(readFileSync(path.join(root, "a/b/hello.txt"), "utf8")).toBe("short");
    expect((await files.write("/a/b/hello.txt", Readable.from(["x"]), { mode: 0o4755 })).mode).toBe(0o755);

    expect(await files.makeDir("/a/c", { parents: false, mode: 0o750 })).toMatchObject({
      type: "directory",
      mode: 0o750,
    });
    expect((await failure(files.makeDir("/a/c", { parents: false }))).code).toBe("conflict");
    expect((await files.makeDir("/a/c", { parents: true })).mode).toBe(0o750);
    expect((await failure(files.makeDir("/x/y", { parents: false }))).code).toBe("file_not_found");
    expect((await files.makeDir("/x/y", { parents: true })).path).toBe("/x/y");

    expect((await files.list("/", 1)).map((e) => e.path)).toEqual(["/a", "/x"]);
    expect((await files.list("/a", 2)).map((e) => e.path)).toEqual(["/a/b", "/a/b/hello.txt", "/a/c"]);
    expect((await files.stat("/")).type).toBe("directory");
    expect((await failure(files.stat("/missing"))).code).toBe("file_not_found");
    expect((await failure(files.read("/a"))).code).toBe("bad_request");

    expect((await files.setOwnership("/a/c", { mode: 0o700, uid: 0, gid: 0 })).mode).toBe(0o700);
    await files.remove("/a");
    expect(existsSync(path.join(root, "a"))).toBe(false);
    expect((await failure(files.remove("/a"))).code).toBe("file_not_found");
    expect((await failure(files.remove("/"))).code).toBe("bad_request");
  });

  it("leaves no partial file when the body fails midway, and the replaced file as it was", async () => {
    const cutOff = () =>
      Readable.from(
        (async function* () {
          yield Buffer.from("partial ");
          throw new ApiError("payload_too_large", "upload is larger than the limit");
        })(),
      );
    expect((await failure(files.write("/cut/new.txt", cutOff(), {}))).code).toBe("payload_too_large");
    expect(readdirSync(path.join(root, "cut"))).toEqual([]);
    await files.write("/cut/old.txt", Readable.from(["old content"]), { mode: 0o640 });
    expect((await failure(files.write("/cut/old.txt", cutOff(), { mode: 0o600 }))).code).toBe("payload_too_large");
    expect(readdirSync(path.join(root, "cut"))).toEqual(["old.txt"]);
    expect(readFileSync(path.join(root, "cut/old.txt"), "utf8")).toBe("old content");
    expect(statSync(path.join(root, "cut/old.txt")).mode & 0o777).toBe(0o640);
  });

  it("never follows a symlink planted in the volume, at the end of a path or on the way", async () => {
    symlinkSync(outside, path.join(root, "way-out"));
    symlinkSync(path.join(outside, "secret.txt"), path.join(root, "secret-link"));

    for (const p of ["/way-out/secret.txt", "/secret-link"]) {
      expect((await failure(files.read(p))).code).toBe("bad_request");
    }
    expect((await failure(files.write("/secret-link", Readable.from(["owned"]), {}))).code).toBe("bad_request");
    expect((await failure(files.write("/way-out/new.txt", Readable.from(["owned"]), {}))).code).toBe("bad_request");
    expect((await failure(files.makeDir("/way-out/d", { parents: true }))).code).toBe("bad_request");
    expect((await failure(files.list("/way-out", 1))).code).toBe("bad_request");
    expect((await failure(files.setOwnership("/secret-link", { mode: 0o777 }))).code).toBe("bad_request");
    expect(readFileSync(path.join(outside, "secret.txt"), "utf8")).toBe("host only\n");
    expect(existsSync(path.join(outside, "new.txt"))).toBe(false);
    expect(statSync(path.join(outside, "secret.txt")).mode & 0o777).not.toBe(0o777);

    // Listed and stat'ed as symlinks, with their target shown but not followed.
    const listed = await files.list("/", 3);
    expect(listed.map((e) => [e.path, e.type])).toEqual([
      ["/secret-link", "symlink"],
      ["/way-out", "symlink"],
    ]);
    expect((await files.stat("/way-out")).target).toBe(outside);

    // Removing a directory that holds symlinks removes the links, never what they point to.
    mkdirSync(path.join(root, "tree/deeper"), { recursive: true });
    symlinkSync(outside, path.join(root, "tree/deeper/link"));
    await files.remove("/tree");
    await files.remove("/way-out");
    expect(existsSync(path.join(root, "tree"))).toBe(false);
    expect(existsSync(path.join(root, "way-out"))).toBe(false);
    expect(readFileSync(path.join(outside, "secret.txt"), "utf8")).toBe("host only\n");
  });
});
