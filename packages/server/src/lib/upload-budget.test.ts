import zlib from "node:zlib";
import tar from "tar-stream";
import { describe, expect, it } from "vitest";
import { ApiError } from "../errors.js";
import { assertArchiveWithinLimit } from "./upload-budget.js";

const LIMIT = 64 * 1024;

async function tarOf(files: { name: string; size: number }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const f of files) pack.entry({ name: f.name, size: f.size }, Buffer.alloc(f.size, 0x61));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function refusal(archive: Buffer): Promise<ApiError> {
  const e = await assertArchiveWithinLimit(archive, LIMIT, "context").then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
}

describe("assertArchiveWithinLimit", () => {
  it("takes a tar or tar.gz whose files fit the limit, and an empty archive", async () => {
    const archive = await tarOf([{ name: "a", size: LIMIT }]);
    await assertArchiveWithinLimit(archive, LIMIT, "context");
    await assertArchiveWithinLimit(zlib.gzipSync(archive), LIMIT, "context");
    await assertArchiveWithinLimit(Buffer.alloc(10240), LIMIT, "context");
  });

  it("refuses a gzip bomb by what it unpacks to, naming the field", async () => {
    const bomb = zlib.gzipSync(await tarOf([{ name: "big", size: 64 * 1024 * 1024 }]));
    expect(bomb.length).toBeLessThan(LIMIT);
    const e = await refusal(bomb);
    expect(e.code).toBe("payload_too_large");
    expect(e.message).toMatch(/^context: /);
  });

  it("refuses what is not a tar (other compressions would escape the count)", async () => {
    const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(600, 1)]);
    expect((await refusal(xz)).code).toBe("validation_failed");
    expect((await refusal(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x01]))).code).toBe("validation_failed");
  });
});
