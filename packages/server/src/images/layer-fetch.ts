import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { LayerUnpackError, type UnpackResult, unpackLayer } from "./layer-unpack.js";
import { type Descriptor, RegistryError, type RegistrySession } from "./registry-client.js";
import { TarFormatError } from "./tar-reader.js";

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

function startsWith(buf: Buffer, magic: number[]): boolean {
  return magic.every((b, i) => buf[i] === b);
}

/** A stream that yields `head` first and then the rest of `it`. */
function rejoin(head: Buffer, it: AsyncIterator<Buffer>): Readable {
  return Readable.from(
    (async function* () {
      yield head;
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
}

/** Output of a decompressing stage, with the stage's failure surfacing through the iteration. */
async function* through(input: Readable, stage: NodeJS.ReadWriteStream & Readable): AsyncGenerator<Buffer> {
  const piping = pipeline(input, stage).catch((e: unknown) => {
    stage.destroy(e instanceof Error ? e : new Error(String(e)));
  });
  try {
    for await (const chunk of stage) yield chunk as Buffer;
  } finally {
    input.destroy();
    await piping;
  }
}

async function* zstdDecompressed(input: Readable): AsyncGenerator<Buffer> {
  const child = spawn("zstd", ["-d", "-c", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", (e) => reject(new LayerUnpackError(`zstd layers need the zstd program: ${e.message}`)));
    child.on("close", resolve);
  });
  child.stdin.on("error", () => undefined);
  const feeding = pipeline(input, child.stdin).catch(() => undefined);
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const code = await exited;
    if (code !== 0) throw new LayerUnpackError(`the zstd layer does not decompress: ${stderr.trim()}`);
  } finally {
    child.kill("SIGKILL");
    await feeding;
  }
}

/** The uncompressed tar of a layer blob in any of the OCI encodings (gzip, zstd or none). */
async function* decompressed(blob: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = blob[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  while (head.length < 4) {
    const next = await it.next();
    if (next.done) break;
    head = Buffer.concat([head, next.value]);
  }
  const input = rejoin(head, it);
  if (startsWith(head, GZIP_MAGIC)) yield* through(input, createGunzip());
  else if (startsWith(head, ZSTD_MAGIC)) yield* zstdDecompressed(input);
  else yield* input as AsyncIterable<Buffer>;
}

/**
 * Downloads one layer blob and unpacks it into `target` as it arrives, checking the blob against its
 * digest and size and the uncompressed tar against the config's diff id. On any mismatch the caller
 * must throw the directory away.
 */
export async function fetchLayer(
  session: RegistrySession,
  descriptor: Descriptor,
  diffId: string | undefined,
  target: string,
  onBytes: (n: number) => void,
): Promise<UnpackResult> {
  const res = await session.blob(descriptor);
  const blobHash = createHash("sha256");
  const tarHash = createHash("sha256");
  let received = 0;
  const counted = async function* () {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      received += chunk.length;
      if (received > descriptor.size) {
        throw new RegistryError("invalid", `layer ${descriptor.digest} is larger than its manifest says`);
      }
      blobHash.update(chunk);
      onBytes(chunk.length);
      yield chunk;
    }
  };
  const hashedTar = async function* () {
    for await (const chunk of decompressed(counted())) {
      tarHash.update(chunk);
      yield chunk;
    }
  };
  let result: UnpackResult;
  try {
    result = await unpackLayer(hashedTar(), target);
  } catch (e) {
    if (e instanceof TarFormatError || e instanceof LayerUnpackError) {
      throw new RegistryError("invalid", `layer ${descriptor.digest} cannot be unpacked: ${e.message}`);
    }
    if (e instanceof RegistryError || (e as NodeJS.ErrnoException).code === "ENOSPC") throw e;
    // A broken connection or gzip stream: the registry's content did not arrive whole.
    throw new RegistryError("unavailable", `layer ${descriptor.digest}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    res.destroy();
  }
  const digest = `sha256:${blobHash.digest("hex")}`;
  if (received !== descriptor.size || digest !== descriptor.digest) {
    throw new RegistryError(
      "invalid",
      `layer ${descriptor.digest} does not match its digest (got ${digest}, ${received} of ${descriptor.size} bytes)`,
    );
  }
  const tarDigest = `sha256:${tarHash.digest("hex")}`;
  if (diffId !== undefined && tarDigest !== diffId) {
    throw new RegistryError(
      "invalid",
      `layer ${descriptor.digest} unpacks to ${tarDigest}, not the config's ${diffId}`,
    );
  }
  return result;
}
