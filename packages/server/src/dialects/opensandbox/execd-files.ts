import type { IncomingMessage } from "node:http";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import { ApiError } from "../../errors.js";
import { receiveMultipart } from "../../http/upload-limit.js";
import type { AppServices } from "../../services/index.js";
import type { SandboxFileInfo, SandboxFiles } from "../../services/sandbox-files.js";
import { resolvePath, type SandboxAccess } from "./execd-session.js";
import { fileMetadataSchema, type Permission } from "./schemas.js";

/** execd's `FileInfo`. */
export interface ExecdFileInfo {
  path: string;
  type: "file" | "directory" | "symlink" | "other";
  size: number;
  modified_at: string;
  created_at: string;
  owner: string;
  group: string;
  mode: number;
}

/** Walks at most this many entries for a search, so one request cannot list a whole disk forever. */
const MAX_SEARCH_ENTRIES = 100_000;
const MAX_METADATA_BYTES = 64 * 1024;

/** execd writes modes as octal digits read as a decimal number: 0o755 ↔ 755. */
export const modeToExecd = (mode: number) => Number((mode & 0o7777).toString(8));
export const modeFromExecd = (mode: number) => Number.parseInt(String(mode), 8);

/**
 * A glob as execd's search takes it: `**` crosses directories, `*` and `?` do not. A pattern without
 * `/` matches file names in any directory; one with `/` matches paths relative to the search root.
 */
export function globMatcher(pattern: string): (relativePath: string) => boolean {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      i++;
      if (pattern[i + 1] === "/") {
        i++;
        re += "(?:.*/)?";
      } else re += ".*";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  const regex = new RegExp(`^${re}$`);
  const byName = !pattern.includes("/") && !pattern.includes("**");
  return (p) => regex.test(byName ? path.posix.basename(p) : p);
}

/**
 * `Range: bytes=…` for a file of `size` bytes: the inclusive span, `unsatisfiable`, or undefined for the
 * whole file (no header, or a form this server does not serve, which HTTP allows ignoring).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? "");
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || start > end) return "unsatisfiable";
  return { start, end };
}

/** Passes on only bytes `start`..`end` (inclusive) of a stream. */
function slice(start: number, end: number): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const from = Math.max(0, start - offset);
      const to = Math.min(chunk.length, end + 1 - offset);
      offset += chunk.length;
      done(null, from < to ? chunk.subarray(from, to) : undefined);
    },
  });
}

async function readAll(stream: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += (c as Buffer).length;
    if (size > max) throw new ApiError("bad_request", `metadata part larger than ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseMetadata(text: string) {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ApiError("bad_request", "metadata part is not JSON");
  }
  const parsed = fileMetadataSchema.safeParse(json);
  if (!parsed.success) {
    const summary = parsed.error.issues.map((i) => `metadata.${i.path.join(".")}: ${i.message}`).join("; ");
    throw new ApiError("bad_request", `Invalid request: ${summary}`);
  }
  return parsed.data;
}

/** One request's view of a sandbox's files: relative paths are relative to its working directory. */
class FilesSession {
  constructor(
    readonly access: SandboxAccess,
    readonly files: SandboxFiles,
  ) {}

  get accounts() {
    return this.files.accounts;
  }

  resolve(p: string): string {
    return resolvePath(this.access.record, p);
  }

  async info(entry: SandboxFileInfo): Promise<ExecdFileInfo> {
    const { owner, group } = await this.accounts.ownerNames(entry.uid, entry.gid);
    return {
      path: entry.path,
      type: entry.type === "dir" ? "directory" : entry.type,
      size: entry.size,
      modified_at: entry.mtime,
      // The sandbox reports no birth time; the modification time is the closest it knows.
      created_at: entry.mtime,
      owner,
      group,
      mode: modeToExecd(entry.mode),
    };
  }

  stat(p: string) {
    return this.files.stat(p);
  }

  /** Whether a path exists; other errors are errors. */
  async exists(p: string): Promise<SandboxFileInfo | undefined> {
    try {
      return await this.stat(p);
    } catch (e) {
      if (e instanceof ApiError && e.code === "file_not_found") return undefined;
      throw e;
    }
  }
}

/** execd's file and directory endpoints over the sandbox's files. */
export class ExecdFiles {
  constructor(private readonly services: Pick<AppServices, "files" | "exec" | "maxUploadBytes">) {}

  async open(access: SandboxAccess): Promise<FilesSession> {
    const files = await this.services.files.open(access.org, access.record.id, (p) => resolvePath(access.record, p));
    return new FilesSession(access, files);
  }

  async info(access: SandboxAccess, paths: string[]): Promise<Record<string, ExecdFileInfo>> {
    const s = await this.open(access);
    const out: Record<string, ExecdFileInfo> = {};
    for (const p of paths) out[p] = await s.info(await s.stat(s.resolve(p)));
    return out;
  }

  /**
   * Multipart upload: parts come in pairs, a `metadata` part (JSON: path, owner, group, mode) and the
   * `file` part it describes. Each file is written atomically; its parents are created.
   */
  async upload(access: SandboxAccess, req: IncomingMessage): Promise<void> {
    const s = await this.open(access);
    let metadata: Promise<ReturnType<typeof parseMetadata>> | undefined;
    let files = 0;
    const write = async (meta: ReturnType<typeof parseMetadata>, stream: Readable) => {
      const owner = await s.accounts.ownerFor(meta, s.access.record.user, "metadata");
      await s.files.write(meta.path, stream, {
        mkdirs: true,
        ...(meta.mode !== undefined ? { mode: modeFromExecd(meta.mode) } : {}),
        ...(owner ? { owner } : {}),
      });
    };
    await receiveMultipart(
      req,
      this.services.maxUploadBytes,
      {
        field: (name, value) => {
          if (name === "metadata") metadata = Promise.resolve().then(() => parseMetadata(value));
        },
        file: (name, stream) => {
          if (name === "metadata") {
            metadata = readAll(stream, MAX_METADATA_BYTES).then(parseMetadata);
            metadata.catch(() => undefined);
            return metadata;
          }
          if (name !== "file") return undefined;
          const described = metadata;
          metadata = undefined;
          if (!described) throw new ApiError("bad_request", "every file part must follow its metadata part");
          files++;
          return described.then((meta) => write(meta, stream));
        },
      },
      { notContent: ["metadata"] },
    );
    if (files === 0) throw new ApiError("bad_request", "no file part in the upload");
  }

  /** A file (or a byte range of it) to send. */
  async download(access: SandboxAccess, p: string, range: { header?: string; offset?: number; limit?: number }) {
    const s = await this.open(access);
    const target = s.resolve(p);
    const entry = await s.stat(target);
    if (entry.type === "dir") throw new ApiError("bad_request", `${p} is a directory`);
    const file = await s.files.read(p);
    const size = file.size;
    let span = parseRange(range.header, size);
    if (span === undefined && (range.offset !== undefined || range.limit !== undefined)) {
      const start = range.offset ?? 0;
      const end = range.limit !== undefined ? Math.min(size, start + range.limit) - 1 : size - 1;
      span = start >= size && size > 0 ? "unsatisfiable" : { start, end };
    }
    const name = path.posix.basename(target);
    if (span === "unsatisfiable") {
      file.body.destroy();
      return { kind: "unsatisfiable" as const, size, name };
    }
    if (!span) return { kind: "whole" as const, size, name, body: file.body };
    return { kind: "partial" as const, size, name, span, body: file.body.pipe(slice(span.start, span.end)) };
  }

  /** Removes files (never directories); missing ones are skipped, as execd does. */
  async deleteFiles(access: SandboxAccess, paths: string[]): Promise<void> {
    const s = await this.open(access);
    for (const p of paths) {
      const target = s.resolve(p);
      const entry = await s.exists(target);
      if (!entry) continue;
      if (entry.type === "dir") throw new ApiError("bad_request", `${p} is a directory: use DELETE /directories`);
      await s.files.remove(p);
    }
  }

  async deleteDirectories(access: SandboxAccess, paths: string[]): Promise<void> {
    const s = await this.open(access);
    for (const p of paths) {
      const target = s.resolve(p);
      if (target === "/") throw new ApiError("bad_request", "refusing to delete /");
      if (!(await s.exists(target))) continue;
      await s.files.remove(p, { recursive: true });
    }
  }

  async move(access: SandboxAccess, moves: { src: string; dest: string }[]): Promise<void> {
    const s = await this.open(access);
    for (const m of moves) await s.files.move(m.src, m.dest);
  }

  /** `mkdir -p` for each path, with its mode and owner when it is created. */
  async makeDirectories(access: SandboxAccess, dirs: Record<string, Permission>): Promise<void> {
    const s = await this.open(access);
    for (const [p, perm] of Object.entries(dirs)) {
      const owner = await s.accounts.ownerFor(perm, s.access.record.user, p);
      await s.files.mkdir(p, { parents: true, mode: modeFromExecd(perm.mode ?? 755), ...(owner ? { owner } : {}) });
    }
  }

  /** Changes mode, owner and group, with chmod/chown run as root inside the sandbox. */
  async setPermissions(access: SandboxAccess, entries: Record<string, Permission>): Promise<void> {
    const s = await this.open(access);
    for (const [p, perm] of Object.entries(entries)) {
      const target = s.resolve(p);
      await s.stat(target);
      const steps: string[][] = [];
      if (perm.mode !== undefined) steps.push(["chmod", String(perm.mode).padStart(3, "0"), "--", target]);
      if (perm.owner !== undefined || perm.group !== undefined) {
        const owner = perm.owner !== undefined ? await s.accounts.user(perm.owner) : undefined;
        if (perm.owner !== undefined && !owner)
          throw new ApiError("bad_request", `${p}: no user ${perm.owner} in the sandbox`);
        const gid = perm.group !== undefined ? await s.accounts.groupId(perm.group) : undefined;
        if (perm.group !== undefined && gid === undefined) {
          throw new ApiError("bad_request", `${p}: no group ${perm.group} in the sandbox`);
        }
        steps.push(["chown", `${owner?.uid ?? ""}${gid !== undefined ? `:${gid}` : ""}`, "--", target]);
      }
      for (const args of steps) {
        const r = await this.services.exec.run(access.org, access.record.id, { args, user: "0" });
        if (r.exitCode !== 0) throw new ApiError("bad_request", `${p}: ${args[0]} failed: ${r.stderr.trim()}`);
      }
    }
  }

  /** Replaces every occurrence of `old` with `new` in each file; the file keeps its mode and owner. */
  async replace(access: SandboxAccess, entries: Record<string, { old: string; new: string }>) {
    const s = await this.open(access);
    const counts: Record<string, { replacedCount: number }> = {};
    for (const [p, { old, new: replacement }] of Object.entries(entries)) {
      const text = await s.files.readText(p);
      const parts = text.split(old);
      counts[p] = { replacedCount: parts.length - 1 };
      if (parts.length > 1) {
        await s.files.write(p, Buffer.from(parts.join(replacement), "utf8"));
      }
    }
    return counts;
  }

  /**
   * Entries under a directory: depth 1 is its children; deeper levels follow their parent, each
   * directory in name order. Symbolic links are listed, never followed.
   */
  async listDirectory(access: SandboxAccess, p: string, depth: number): Promise<ExecdFileInfo[]> {
    const s = await this.open(access);
    const root = s.resolve(p);
    const entry = await s.stat(root);
    if (entry.type === "symlink") throw new ApiError("bad_request", `${p} is a symbolic link: list the real directory`);
    if (entry.type !== "dir") throw new ApiError("bad_request", `${p} is not a directory`);
    const out: ExecdFileInfo[] = [];
    const walk = async (dir: string, level: number): Promise<void> => {
      if (level > depth) return;
      for (const child of await s.files.list(dir)) {
        out.push(await s.info(child));
        if (child.type === "dir") await walk(child.path, level + 1);
      }
    };
    await walk(root, 1);
    return out;
  }

  /** Files under a directory whose name (or relative path) matches a glob. */
  async search(access: SandboxAccess, p: string, pattern: string): Promise<ExecdFileInfo[]> {
    const s = await this.open(access);
    const root = s.resolve(p);
    const entry = await s.stat(root);
    if (entry.type !== "dir") throw new ApiError("bad_request", `${p} is not a directory`);
    const matches = globMatcher(pattern);
    const out: ExecdFileInfo[] = [];
    let seen = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const child of await s.files.list(dir)) {
        if (++seen > MAX_SEARCH_ENTRIES) {
          throw new ApiError(
            "bad_request",
            `more than ${MAX_SEARCH_ENTRIES} entries under ${p}: search a smaller directory`,
          );
        }
        if (child.type === "dir") await walk(child.path);
        else if (matches(path.posix.relative(root, child.path))) out.push(await s.info(child));
      }
    };
    await walk(root);
    return out;
  }

  /** execd's metrics from the sandbox's /proc: CPU use over a short sample, memory in use. */
  async metrics(access: SandboxAccess) {
    const s = await this.open(access);
    const read = (file: string) => s.files.readText(file);
    const cpuTimes = (stat: string) => {
      const fields = (stat.split("\n").find((l) => l.startsWith("cpu ")) ?? "")
        .trim()
        .split(/\s+/)
        .slice(1)
        .map(Number);
      const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
      return { idle, total: fields.reduce((a, b) => a + b, 0) };
    };
    const before = cpuTimes(await read("/proc/stat"));
    await new Promise((r) => setTimeout(r, 200));
    const after = cpuTimes(await read("/proc/stat"));
    const meminfo = await read("/proc/meminfo");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(meminfo)?.[1] ?? 0);
    const total = kb("MemTotal");
    const available = kb("MemAvailable") || kb("MemFree");
    const busy = after.total - before.total - (after.idle - before.idle);
    const elapsed = after.total - before.total;
    return {
      cpu_count: access.record.vcpus,
      cpu_used_pct: elapsed > 0 ? Math.round((busy / elapsed) * 10_000) / 100 : 0,
      mem_total_mib: Math.round((total / 1024) * 100) / 100,
      mem_used_mib: Math.round(((total - available) / 1024) * 100) / 100,
      timestamp: Date.now(),
    };
  }
}
