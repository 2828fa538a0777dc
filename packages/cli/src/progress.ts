import { humanBytes } from "./format.js";

/**
 * Draws a one-line progress bar on a terminal. When the stream is not one it prints plain lines, or
 * nothing with `plainLines: false` (for progress that only matters to someone watching).
 */
export class ProgressReporter {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #plainLines: boolean;
  #drawn = false;
  #lastPlain = "";

  constructor(out: NodeJS.WriteStream, { plainLines = true }: { plainLines?: boolean } = {}) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#plainLines = plainLines;
  }

  /** Shows the build's current phase and percentage (null when unknown). */
  progress(phase: string, percent: number | null, message: string): void {
    if (!this.#tty) {
      if (!this.#plainLines) return;
      const line = `${phase}${percent === null ? "" : ` ${Math.floor(percent)}%`}${message ? `: ${message}` : ""}`;
      if (line !== this.#lastPlain) this.#out.write(`${line}\n`);
      this.#lastPlain = line;
      return;
    }
    const columns = this.#out.columns || 80;
    const width = 30;
    const filled = percent === null ? 0 : Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
    const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
    const pct = percent === null ? "  ?%" : `${String(Math.floor(percent)).padStart(3)}%`;
    const text = `${bar} ${pct} ${phase}${message ? `: ${message}` : ""}`;
    this.#out.write(`\r\x1b[2K${text.slice(0, Math.max(10, columns - 1))}`);
    this.#drawn = true;
  }

  /** Prints a line above the bar. */
  line(text: string): void {
    this.clear();
    this.#out.write(`${text}\n`);
  }

  /** Removes the bar, leaving the cursor at the start of an empty line. */
  clear(): void {
    if (this.#drawn) this.#out.write("\r\x1b[2K");
    this.#drawn = false;
  }
}

/**
 * Counts the bytes of a transfer (`cp`) against their expected total and redraws the bar as they pass,
 * on a terminal only.
 */
export class TransferProgress {
  readonly #reporter: ProgressReporter;
  readonly #label: string;
  #total = 0;
  #done = 0;

  constructor(out: NodeJS.WriteStream, label: string) {
    this.#reporter = new ProgressReporter(out, { plainLines: false });
    this.#label = label;
  }

  /** Adds bytes that are going to be transferred. */
  expect(bytes: number): void {
    this.#total += bytes;
  }

  /** Counts bytes that were transferred. */
  add(bytes: number): void {
    this.#done += bytes;
    const percent = this.#total > 0 ? Math.min(100, (this.#done / this.#total) * 100) : null;
    this.#reporter.progress(this.#label, percent, `${humanBytes(this.#done)} of ${humanBytes(this.#total)}`);
  }

  /** Counts the chunks of `source` as they pass through. */
  async *count(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      this.add(chunk.length);
      yield chunk;
    }
  }

  /** Removes the bar. */
  finish(): void {
    this.#reporter.clear();
  }
}
