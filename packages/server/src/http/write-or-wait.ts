import type { ServerResponse } from "node:http";

/**
 * Writes a chunk of a long response and, when the socket's buffer is full, waits until it drains or the
 * client goes away: a slow reader slows the producer instead of piling output up in memory.
 */
export async function writeOrWait(res: ServerResponse, chunk: string): Promise<void> {
  if (res.destroyed || res.write(chunk)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
