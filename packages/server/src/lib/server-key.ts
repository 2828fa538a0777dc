import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * A secret of the server kept in `file` (0600, created once with 32 random bytes): tokens derived from it
 * need no storage, and nothing a sandbox holds lets anyone compute them.
 */
export async function loadOrCreateServerKey(file: string): Promise<Buffer> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, randomBytes(32), { mode: 0o600, flag: "wx" }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e;
  });
  return readFile(file);
}

/**
 * A key the whole cluster shares: this server's own (`file`, see loadOrCreateServerKey) is offered to the
 * store, and the first one stored wins — tokens one node issues then hold on every node. A single node
 * (SQLite) keeps using its file.
 */
export async function loadOrCreateSharedKey(
  store: { sharedKey(name: string, initial: Buffer): Promise<Buffer> },
  name: string,
  file: string,
): Promise<Buffer> {
  return store.sharedKey(name, await loadOrCreateServerKey(file));
}

/** HMAC-SHA256 of `message` under `key`, base64url. */
export function keyedToken(key: Buffer, message: string): string {
  return createHmac("sha256", key).update(message).digest("base64url");
}

/** Compares a token a client sent with the expected one in constant time. */
export function tokensEqual(given: string, expected: string): boolean {
  const x = Buffer.from(given);
  const y = Buffer.from(expected);
  return x.length === y.length && timingSafeEqual(x, y);
}
