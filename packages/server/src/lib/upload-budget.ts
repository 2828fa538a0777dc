import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { ApiError } from "../errors.js";

/**
 * Bytes of framing allowed on top of the upload limit in container formats (multipart boundaries, part
 * headers and metadata parts; tar headers and padding): the limit itself is on the files' bytes.
 */
export const FRAMING_ALLOWANCE = 1024 * 1024;

/**
 * The 413 for an upload over the limit. The rest of the body is never written anywhere: how the
 * connection ends (a client waiting for `100 Continue`, one still sending) is `answerBeforeBody`'s job.
 */
export function uploadTooLarge(limit: number, declared?: number): ApiError {
  const message =
    declared === undefined
      ? `upload is larger than the limit of ${limit} bytes`
      : `upload of ${declared} bytes is over the limit of ${limit} bytes`;
  return new ApiError("payload_too_large", message, { limit });
}

/** A byte allowance shared by the streams of one upload (the files of a multipart body, of an archive). */
export class UploadBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** A pass-through charging this budget: it fails with the 413 at the first byte over the limit. */
  meter(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.used += chunk.length;
        if (this.used > this.limit) done(uploadTooLarge(this.limit));
        else done(null, chunk);
      },
    });
  }

  /** `source` read through `meter()`; an error of `source` fails the metered stream too. */
  metered(source: Readable): Readable {
    const meter = this.meter();
    source.on("error", (e) => meter.destroy(e));
    return source.pipe(meter);
  }
}

/** Fails with the 413 as soon as more than `limit` bytes went through. */
export const byteLimit = (limit: number): Transform => new UploadBudget(limit).meter();

/**
 * Refuses a tar or tar.gz archive (held whole) that unpacks to more than `limit` bytes plus its headers'
 * allowance, decoding it only that far. Anything but a tar, gzipped or not, is refused too: tools that
 * unpack it later guess other compressions, which would escape this count.
 */
export async function assertArchiveWithinLimit(archive: Buffer, limit: number, field: string): Promise<void> {
  const gzipped = archive[0] === 0x1f && archive[1] === 0x8b;
  let head = Buffer.alloc(0);
  const keepHead = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (head.length < 512) head = Buffer.concat([head, chunk]).subarray(0, 512);
      done();
    },
  });
  const source = Readable.from([archive]);
  const meter = byteLimit(limit + FRAMING_ALLOWANCE);
  const invalid = (message: string) =>
    new ApiError("validation_failed", `Invalid request: ${field}: ${message}`, {
      fields: [{ field, rule: "archive", message }],
    });
  try {
    if (gzipped) await pipeline(source, zlib.createGunzip(), meter, keepHead);
    else await pipeline(source, meter, keepHead);
  } catch (e) {
    if (e instanceof ApiError && e.code === "payload_too_large") {
      throw new ApiError(
        "payload_too_large",
        `${field}: the archive unpacks to more than the upload limit of ${limit} bytes`,
        { limit, field },
      );
    }
    throw invalid(`not a tar or tar.gz archive (${e instanceof Error ? e.message : e})`);
  }
  // ustar (POSIX) and GNU tar headers both carry "ustar" at offset 257; an empty archive is zeros only.
  const empty = head.every((b) => b === 0);
  if (!empty && head.subarray(257, 262).toString("latin1") !== "ustar") {
    throw invalid("not a tar or tar.gz archive");
  }
}
