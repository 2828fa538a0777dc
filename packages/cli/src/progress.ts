/** Draws a one-line progress bar on a terminal, or prints plain lines when the stream is not one. */
export class ProgressReporter {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #drawn = false;
  #lastPlain = "";

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  /** Shows the build's current phase and percentage (null when unknown). */
  progress(phase: string, percent: number | null, message: string): void {
    if (!this.#tty) {
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
