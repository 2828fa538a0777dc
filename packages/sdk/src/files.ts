import type { Readable } from "node:stream";
import {
  type FileEntry,
  type FileWatchEvent,
  fileWatchEventSchema,
  listFilesResponseSchema,
  writeFileResponseSchema,
} from "@sandpit/contract";
import type { ApiClient } from "./api-client.js";
import { parseNdjsonEvents } from "./ndjson.js";

export type { FileEntry };

/** Content for {@link Files.write}: text (written as UTF-8), bytes, a web stream or a Node readable. */
export type WriteData = string | Uint8Array | ReadableStream<Uint8Array> | Readable | AsyncIterable<Uint8Array>;

/** What the server stored: the file's path and its size in bytes. */
export interface WriteInfo {
  path: string;
  size: number;
}

/** How {@link Files.read} returns a file. */
export type ReadFormat = "text" | "bytes" | "stream";

/**
 * Reads and writes files in one sandbox; reached as `sandbox.files`.
 *
 * @example
 * ```ts
 * await sandbox.files.write("/root/hello.txt", "hello");
 * const text = await sandbox.files.read("/root/hello.txt");
 * ```
 */
export class Files {
  readonly #sandboxId: string;
  readonly #client: ApiClient;

  /** @internal Reached as `sandbox.files`. */
  constructor(sandboxId: string, client: ApiClient) {
    this.#sandboxId = sandboxId;
    this.#client = client;
  }

  /**
   * Writes a file, creating its parent directories and replacing any file already there. Streams are
   * sent as they are read, without buffering the whole content (and so are not retried).
   *
   * @param opts - `mode`: permission bits as an octal string (`"755"`) or a number (`0o755`); 644 by default.
   * @example
   * ```ts
   * await sandbox.files.write("/root/run.sh", "#!/bin/sh\necho hi\n", { mode: "755" });
   * await sandbox.files.write("/root/data.bin", fs.createReadStream("data.bin"));
   * ```
   */
  async write(path: string, data: WriteData, opts: { mode?: string | number } = {}): Promise<WriteInfo> {
    return this.#client.json(writeFileResponseSchema, this.#path(""), {
      method: "PUT",
      query: { path, mode: formatMode(opts.mode) },
      body: toBody(data),
    });
  }

  /**
   * Reads a file: as UTF-8 text by default, as bytes, or as a stream that does not buffer the file.
   * Throws {@link FileNotFoundError} when there is no such file.
   *
   * @example
   * ```ts
   * const text = await sandbox.files.read("/etc/os-release");
   * const bytes = await sandbox.files.read("/root/image.png", { format: "bytes" });
   * const stream = await sandbox.files.read("/root/big.tar", { format: "stream" });
   * ```
   */
  read(path: string, opts?: { format?: "text" }): Promise<string>;
  read(path: string, opts: { format: "bytes" }): Promise<Uint8Array>;
  read(path: string, opts: { format: "stream" }): Promise<ReadableStream<Uint8Array>>;
  read(path: string, opts?: { format?: ReadFormat }): Promise<string | Uint8Array | ReadableStream<Uint8Array>>;
  async read(
    path: string,
    opts: { format?: ReadFormat } = {},
  ): Promise<string | Uint8Array | ReadableStream<Uint8Array>> {
    const request = { query: { path }, headers: { accept: "application/octet-stream" } };
    if (opts.format === "stream") return (await this.#client.stream(this.#path(""), request)).body;
    const bytes = await this.#client.bytes(this.#path(""), request);
    return opts.format === "bytes" ? bytes : new TextDecoder().decode(bytes);
  }

  /**
   * Lists a directory's entries (not recursively).
   *
   * @example
   * ```ts
   * for (const entry of await sandbox.files.list("/root")) console.log(entry.type, entry.name, entry.size);
   * ```
   */
  async list(path: string): Promise<FileEntry[]> {
    const { entries } = await this.#client.json(listFilesResponseSchema, this.#path("/list"), { query: { path } });
    return entries;
  }

  /**
   * Watches a directory: `onEvent` gets every change (create, modify, delete, rename, chmod) under it
   * until `stop()`. Resolves once the watch is in place, so that no change made after it is missed.
   *
   * @example
   * ```ts
   * const watch = await sandbox.files.watch("/workspace", (e) => console.log(e.type, e.path), { recursive: true });
   * await sandbox.commands.run("touch /workspace/x");
   * watch.stop();
   * ```
   */
  async watch(
    path: string,
    onEvent: (event: FileWatchEvent) => void,
    opts: { recursive?: boolean } = {},
  ): Promise<{ stop: () => void; done: Promise<void> }> {
    const abort = new AbortController();
    const response = await this.#client.stream(this.#path("/watch"), {
      query: { path, recursive: opts.recursive === true },
      headers: { accept: "application/x-ndjson" },
      signal: abort.signal,
    });
    const events = parseNdjsonEvents(fileWatchEventSchema, response.body, response.requestId);
    const first = await events.next();
    if (!first.done && first.value.type !== "ready") onEvent(first.value);
    const done = (async () => {
      try {
        for await (const event of events) onEvent(event);
      } catch (e) {
        if (!abort.signal.aborted) throw e;
      }
    })();
    done.catch(() => undefined);
    return { stop: () => abort.abort(), done };
  }

  /**
   * Removes a file, or a directory with `recursive: true`.
   *
   * @example
   * ```ts
   * await sandbox.files.remove("/root/build", { recursive: true });
   * ```
   */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.#client.empty(this.#path(""), {
      method: "DELETE",
      query: { path, recursive: opts.recursive === true ? "true" : undefined },
    });
  }

  /**
   * Creates a directory, and its missing parents unless `parents: false`.
   *
   * @example
   * ```ts
   * await sandbox.files.mkdir("/root/project/src");
   * ```
   */
  async mkdir(path: string, opts: { parents?: boolean; mode?: string | number } = {}): Promise<void> {
    await this.#client.empty(this.#path("/mkdir"), {
      method: "POST",
      json: { path, parents: opts.parents ?? true, mode: formatMode(opts.mode) },
    });
  }

  #path(suffix: string): string {
    return `/sandboxes/${encodeURIComponent(this.#sandboxId)}/files${suffix}`;
  }
}

function formatMode(mode: string | number | undefined): string | undefined {
  if (mode === undefined) return undefined;
  if (typeof mode === "string") return mode;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new RangeError("mode must be between 0 and 0o7777");
  return mode.toString(8).padStart(3, "0");
}

function toBody(data: WriteData): Uint8Array | ReadableStream<Uint8Array> {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array || data instanceof ReadableStream) return data;
  return streamFrom(data as AsyncIterable<Uint8Array | string>);
}

/** Wraps an async iterable (such as a Node readable) as a web stream of bytes, pulling on demand. */
function streamFrom(source: AsyncIterable<Uint8Array | string>): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done === true) controller.close();
      else controller.enqueue(typeof next.value === "string" ? encoder.encode(next.value) : next.value);
    },
    async cancel(reason) {
      await iterator.return?.(reason);
    },
  });
}
