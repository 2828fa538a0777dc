import { constants } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink } from "node:fs/promises";
import path from "node:path";
import { runCommand } from "../lib/run-command.js";
import { readTar, type TarEntry } from "./tar-reader.js";

/** A layer that cannot be unpacked safely or correctly; the message names the member. */
export class LayerUnpackError extends Error {}

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
/** Extended attributes a layer may carry onto the host; overlayfs' own (`trusted.overlay.*`) never. */
const ALLOWED_XATTR = /^(security\.capability|user\..+)$/;

/**
 * A member's path relative to the layer's root: leading `/` and `./` dropped, normalised, and refused
 * when it would leave the root (`..`).
 */
export function layerRelativePath(name: string): string {
  const normal = path.posix.normalize(name.replace(/^\/+/, "") || ".").replace(/\/+$/, "");
  if (normal === ".." || normal.startsWith("../")) throw new LayerUnpackError(`${name} leaves the layer's root`);
  return normal === "." ? "" : normal;
}

/** What an OCI whiteout member stands for: a deleted sibling, an opaque directory, or neither. */
export function whiteoutOf(rel: string): { kind: "delete"; target: string } | { kind: "opaque"; dir: string } | null {
  const base = path.posix.basename(rel);
  if (!base.startsWith(WHITEOUT_PREFIX)) return null;
  const dir = path.posix.dirname(rel) === "." ? "" : path.posix.dirname(rel);
  if (base === OPAQUE_MARKER) return { kind: "opaque", dir };
  const target = base.slice(WHITEOUT_PREFIX.length);
  // `.wh..wh.*` other than the opaque marker are AUFS bookkeeping (hard-link stores), not whiteouts.
  if (target.startsWith(".wh.") || target === "" || target === "." || target === "..") return null;
  return { kind: "delete", target: dir ? `${dir}/${target}` : target };
}

/** Statistics of one unpacked layer. */
export interface UnpackResult {
  entries: number;
  whiteouts: number;
  opaqueDirs: number;
  /** Device nodes are never created on the host: they are counted and left out. */
  skippedDevices: number;
}

interface DeferredDir {
  rel: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
}

/** `dump` format of setfattr: a path with non-printable bytes, backslashes and quotes as octal escapes. */
function escapeDumpPath(rel: string): string {
  return [...Buffer.from(rel, "utf8")]
    .map((b) =>
      b < 0x21 || b > 0x7e || b === 0x5c || b === 0x22 ? `\\${b.toString(8).padStart(3, "0")}` : String.fromCharCode(b),
    )
    .join("");
}

/**
 * Unpacks one image layer (an uncompressed tar stream) into `root`, an empty directory, in the form
 * overlayfs reads lower layers in — the same form the template layers captured from sandboxes have:
 * an OCI whiteout `.wh.NAME` becomes a character device 0/0 named NAME, an opaque marker
 * `.wh..wh..opq` becomes the `trusted.overlay.opaque=y` attribute of its directory. Owners, modes and
 * times are kept. Nothing is ever written through a symlink: a member whose path passes through a
 * symlink or leaves the root, and a hard link to outside the layer, fail the unpack. Device nodes are
 * left out.
 */
export async function unpackLayer(tar: AsyncIterable<Buffer>, root: string): Promise<UnpackResult> {
  const result: UnpackResult = { entries: 0, whiteouts: 0, opaqueDirs: 0, skippedDevices: 0 };
  const knownDirs = new Set<string>([""]);
  const deferredDirs = new Map<string, DeferredDir>();
  const deletions = new Set<string>();
  const opaque = new Set<string>();
  const xattrs = new Map<string, Map<string, Buffer>>();
  const host = (rel: string) => (rel === "" ? root : path.join(root, rel));

  /** Makes sure every directory above `rel` is a real directory of this layer (creating missing ones). */
  const ensureParents = async (rel: string) => {
    const parts = rel.split("/").slice(0, -1);
    let current = "";
    for (const part of parts) {
      current = current ? `${current}/${part}` : part;
      if (knownDirs.has(current)) continue;
      const info = await lstat(host(current)).catch(() => undefined);
      if (!info) await mkdir(host(current), { mode: 0o755 });
      else if (!info.isDirectory()) {
        throw new LayerUnpackError(`${rel} passes through ${current}, which is not a directory in this layer`);
      }
      knownDirs.add(current);
    }
  };

  /** Removes whatever is at `rel` (a later member replaces an earlier one), unless both are directories. */
  const clear = async (rel: string, keepDirectory: boolean): Promise<boolean> => {
    const info = await lstat(host(rel)).catch(() => undefined);
    if (!info) return false;
    if (keepDirectory && info.isDirectory()) return true;
    await rm(host(rel), { recursive: true, force: true });
    for (const dir of knownDirs) if (dir === rel || dir.startsWith(`${rel}/`)) knownDirs.delete(dir);
    for (const dir of deferredDirs.keys()) if (dir === rel || dir.startsWith(`${rel}/`)) deferredDirs.delete(dir);
    return false;
  };

  const onEntry = async (entry: TarEntry, content: AsyncIterable<Buffer>) => {
    const rel = layerRelativePath(entry.name);
    result.entries++;
    if (rel === "") return; // the root itself: a layer's root keeps 0755 root:root
    const whiteout = whiteoutOf(rel);
    if (whiteout) {
      if (whiteout.kind === "opaque") {
        // The directory itself must exist in this layer to carry the mark.
        await ensureParents(rel);
        opaque.add(whiteout.dir);
      } else {
        await ensureParents(whiteout.target);
        deletions.add(whiteout.target);
      }
      return;
    }
    if (path.posix.basename(rel).startsWith(WHITEOUT_PREFIX)) return; // AUFS bookkeeping
    await ensureParents(rel);
    const target = host(rel);
    switch (entry.type) {
      case "directory": {
        if (!(await clear(rel, true))) await mkdir(target, { mode: 0o700 });
        knownDirs.add(rel);
        deferredDirs.set(rel, { rel, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime });
        break;
      }
      case "file": {
        await clear(rel, false);
        const file = await open(
          target,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const piece of content) await file.write(piece);
          await file.chown(entry.uid, entry.gid);
          // After chown, which clears set-id bits.
          await file.chmod(entry.mode);
          await file.utimes(entry.mtime, entry.mtime);
        } finally {
          await file.close();
        }
        break;
      }
      case "symlink": {
        await clear(rel, false);
        // The target is read inside the sandbox only; on the host nothing follows it.
        await symlink(entry.linkName, target);
        await lchown(target, entry.uid, entry.gid);
        await lutimes(target, entry.mtime, entry.mtime);
        break;
      }
      case "hardlink": {
        const source = layerRelativePath(entry.linkName);
        if (source === "") throw new LayerUnpackError(`${entry.name} is a hard link to the layer's root`);
        await ensureParents(source);
        const info = await lstat(host(source)).catch(() => undefined);
        if (!info || info.isDirectory()) {
          throw new LayerUnpackError(
            `${entry.name} is a hard link to ${entry.linkName}, which is not a file of this layer`,
          );
        }
        await clear(rel, false);
        await link(host(source), target);
        break;
      }
      case "fifo": {
        await clear(rel, false);
        await runCommand(["mkfifo", "--", target]);
        await lchown(target, entry.uid, entry.gid);
        await chmod(target, entry.mode);
        break;
      }
      case "char":
      case "block":
        result.skippedDevices++;
        return;
      case "other":
        return;
    }
    const allowed = [...entry.xattrs].filter(([k]) => ALLOWED_XATTR.test(k));
    if (allowed.length && (entry.type === "file" || entry.type === "directory")) xattrs.set(rel, new Map(allowed));
  };

  await readTar(tar, onEntry);

  // Whiteouts: a character device 0/0 hides the name in the layers below, unless this layer has it.
  for (const rel of deletions) {
    if (await lstat(host(rel)).catch(() => undefined)) continue;
    await ensureParents(rel);
    await runCommand(["mknod", "--", host(rel), "c", "0", "0"]);
    result.whiteouts++;
  }
  for (const dir of opaque) {
    const attrs = xattrs.get(dir) ?? new Map<string, Buffer>();
    attrs.set("trusted.overlay.opaque", Buffer.from("y"));
    xattrs.set(dir, attrs);
    result.opaqueDirs++;
  }
  if (xattrs.size > 0) {
    const dump: string[] = [];
    for (const [rel, attrs] of xattrs) {
      const info = await lstat(host(rel)).catch(() => undefined);
      if (!info || !(info.isDirectory() || info.isFile())) continue;
      dump.push(`# file: ${escapeDumpPath(host(rel))}`);
      for (const [k, v] of attrs) dump.push(`${k}=0x${v.toString("hex")}`);
      dump.push("");
    }
    await runCommand(["setfattr", "-h", "--restore=-"], { input: `${dump.join("\n")}\n` });
  }
  // Directories last, deepest first: writing their children changed their times.
  const dirs = [...deferredDirs.values()].sort((a, b) => b.rel.split("/").length - a.rel.split("/").length);
  for (const dir of dirs) {
    const target = host(dir.rel);
    // A directory of this layer (replacing it with anything else dropped it from the list): no symlink.
    await lchown(target, dir.uid, dir.gid);
    await chmod(target, dir.mode);
    await lutimes(target, dir.mtime, dir.mtime);
  }
  return result;
}
