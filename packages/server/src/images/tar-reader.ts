/** One member of a tar archive, with GNU long names and PAX attributes already applied. */
export interface TarEntry {
  /** `file`, `hardlink`, `symlink`, `char`, `block`, `directory`, `fifo`, or `other` (skipped). */
  type: "file" | "hardlink" | "symlink" | "char" | "block" | "directory" | "fifo" | "other";
  name: string;
  linkName: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` records, raw bytes. */
  xattrs: Map<string, Buffer>;
}

/** The archive is malformed or uses something the reader does not support. */
export class TarFormatError extends Error {}

const BLOCK = 512;

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n && !this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.chunks.push(next.value);
        this.buffered += next.value.length;
      }
    }
    return this.buffered >= n;
  }

  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const part = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, part);
      filled += part;
      if (part === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(part);
    }
    this.buffered -= n;
    return out;
  }

  /** Exactly `n` bytes, or undefined when the stream ends first with nothing read. */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.buffered === 0) return undefined;
      throw new TarFormatError("the archive ends in the middle of a block");
    }
    return this.take(n);
  }

  /** `n` bytes as they arrive, without holding them all in memory. */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) throw new TarFormatError("the archive ends inside a file");
      const part = Math.min(left, this.chunks[0]!.length);
      left -= part;
      yield this.take(part);
    }
  }

  /** Reads everything that is left (so that a hash over the whole stream is complete). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (!this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
    }
  }
}

function cString(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString("utf8");
}

/** A numeric header field: octal text, or GNU base-256 when the high bit of its first byte is set. */
function numeric(buf: Buffer, start: number, length: number): number {
  const field = buf.subarray(start, start + length);
  if ((field[0]! & 0x80) !== 0) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    if (!Number.isSafeInteger(value)) throw new TarFormatError("a numeric field is too large");
    return value;
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`a numeric field is not octal: "${text}"`);
  return Number.parseInt(text, 8);
}

function checksumMatches(header: Buffer): boolean {
  const stored = numeric(header, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === stored;
}

/** PAX extended header records: `<length> <key>=<value>\n`, values kept as bytes (xattrs are binary). */
function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const length = Number(data.subarray(pos, space).toString("latin1"));
    if (!Number.isInteger(length) || length <= 0 || pos + length > data.length) {
      throw new TarFormatError("a PAX header record is malformed");
    }
    const record = data.subarray(space + 1, pos + length - 1);
    const eq = record.indexOf(0x3d);
    if (eq > 0) records.set(record.subarray(0, eq).toString("utf8"), record.subarray(eq + 1));
    pos += length;
  }
  return records;
}

const TYPES: Record<string, TarEntry["type"]> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
};

const MAX_META_BYTES = 1024 * 1024;

/**
 * Reads a tar archive (ustar, GNU long names, PAX) from a stream and calls `onEntry` for each member
 * in order; a file's content is read through the `content` iterator it gets (and skipped when unread).
 * Sparse files are refused. Reads the stream to its end, past the end-of-archive blocks.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry, content: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const reader = new ByteReader(source[Symbol.asyncIterator]());
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, Buffer>();
  let globalPax = new Map<string, Buffer>();
  for (;;) {
    const header = await reader.read(BLOCK);
    if (!header || header.every((b) => b === 0)) break;
    if (!checksumMatches(header)) throw new TarFormatError("a header's checksum does not match");
    const typeflag = String.fromCharCode(header[156]!);
    const size = numeric(header, 124, 12);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
      if (size > MAX_META_BYTES) throw new TarFormatError("an extended header is larger than 1 MiB");
      const data = (await reader.read(padded)) ?? Buffer.alloc(0);
      const body = data.subarray(0, size);
      if (typeflag === "x") pax = parsePax(body);
      else if (typeflag === "g") globalPax = new Map([...globalPax, ...parsePax(body)]);
      else if (typeflag === "L") longName = cString(body, 0, body.length);
      else longLink = cString(body, 0, body.length);
      continue;
    }
    if (typeflag === "S") throw new TarFormatError("GNU sparse files are not supported");
    const attrs = new Map([...globalPax, ...pax]);
    if ([...attrs.keys()].some((k) => k.startsWith("GNU.sparse."))) {
      throw new TarFormatError("PAX sparse files are not supported");
    }
    const text = (key: string) => attrs.get(key)?.toString("utf8");
    const magic = header.subarray(257, 263).toString("latin1");
    const prefix = magic === "ustar\0" ? cString(header, 345, 155) : "";
    const headerName = cString(header, 0, 100);
    const name = text("path") ?? longName ?? (prefix ? `${prefix}/${headerName}` : headerName);
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of attrs) if (k.startsWith("SCHILY.xattr.")) xattrs.set(k.slice("SCHILY.xattr.".length), v);
    const paxNumber = (key: string, fallback: number) => {
      const v = text(key);
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new TarFormatError(`PAX ${key} is not a number`);
      return n;
    };
    const entrySize = paxNumber("size", size);
    const entry: TarEntry = {
      type: TYPES[typeflag] ?? "other",
      name,
      linkName: text("linkpath") ?? longLink ?? cString(header, 157, 100),
      mode: numeric(header, 100, 8) & 0o7777,
      uid: paxNumber("uid", numeric(header, 108, 8)),
      gid: paxNumber("gid", numeric(header, 116, 8)),
      size: entrySize,
      mtime: paxNumber("mtime", numeric(header, 136, 12)),
      devMajor: numeric(header, 329, 8),
      devMinor: numeric(header, 337, 8),
      xattrs,
    };
    longName = undefined;
    longLink = undefined;
    pax = new Map();
    // Only regular files carry content; the size field of links and directories is ignored.
    const contentSize = entry.type === "file" || entry.type === "other" ? entrySize : 0;
    let left = contentSize;
    const content: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        for await (const piece of reader.pieces(left)) {
          left -= piece.length;
          yield piece;
        }
      },
    };
    await onEntry(entry, content);
    // Whatever the callback did not read is skipped.
    for await (const piece of reader.pieces(left)) left -= piece.length;
    const padding = Math.ceil(contentSize / BLOCK) * BLOCK - contentSize;
    if (padding > 0 && !(await reader.read(padding))) throw new TarFormatError("the archive ends inside padding");
  }
  await reader.drain();
}
