import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import tar from "tar-stream";
import { ApiError } from "../../errors.js";
import { writeUpload } from "../../http/upload-limit.js";
import { byteLimit, FRAMING_ALLOWANCE, UploadBudget } from "../../lib/upload-budget.js";

/** Where the entries of an uploaded archive go. */
export interface ArchiveTarget {
  writeFile(path: string, content: Readable, size: number, mode: number | undefined): Promise<unknown>;
  mkdir(path: string, mode: number | undefined): Promise<unknown>;
}

/** Node's zlib and tar-stream errors mean the body was not what `fs/write` takes. */
function isArchiveError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return (
    (typeof code === "string" && code.startsWith("Z_")) ||
    (e instanceof Error && /tar|header|unexpected end/i.test(e.message))
  );
}

/**
 * Unpacks a gzip-compressed tar archive (the body of Vercel's `fs/write`) entry by entry into the
 * sandbox, under `extractDir`: each file streams straight to the sandbox, nothing is buffered whole.
 * The files' bytes together may not exceed `limit` (the upload limit, counted on what is extracted),
 * and the unpacked archive not that plus its headers' allowance: a small archive cannot unpack to a
 * huge one. Regular files and directories are supported; links and devices are refused. Entry names
 * cannot climb above `/`. Returns the number of entries written.
 */
export async function unpackArchive(
  body: Readable,
  extractDir: string,
  limit: number,
  target: ArchiveTarget,
): Promise<number> {
  const contents = new UploadBudget(limit);
  const extract = tar.extract();
  const piping = pipeline(body, zlib.createGunzip(), byteLimit(limit + FRAMING_ALLOWANCE), extract);
  // A failure of the pipeline also ends the loop below with that error; this one is only awaited there.
  piping.catch(() => undefined);
  let entries = 0;
  try {
    for await (const entry of extract) {
      const { name, type, size, mode } = entry.header;
      const destination = path.posix.join("/", extractDir, name);
      const permissions = mode & 0o7777;
      if (type === "file" || type === "contiguous-file") {
        // tar-stream entries are streamx streams: Node's file writers read them as a Node stream.
        const content = contents.metered(Readable.from(entry, { objectMode: false }));
        await writeUpload(content, (c) => target.writeFile(destination, c, size, permissions));
      } else if (type === "directory") {
        entry.resume();
        await target.mkdir(destination, permissions);
      } else {
        entry.resume();
        throw new ApiError(
          "not_implemented",
          `${name}: ${type} entries are not supported (regular files and directories only)`,
        );
      }
      entries++;
    }
    await piping;
  } catch (e) {
    body.destroy();
    if (e instanceof ApiError) throw e;
    if (isArchiveError(e)) {
      throw new ApiError("bad_request", `the body is not a gzip-compressed tar archive: ${(e as Error).message}`);
    }
    throw e;
  }
  return entries;
}
