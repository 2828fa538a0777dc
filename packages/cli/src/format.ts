import { SandpitError, ValidationError } from "sandpit";
import { UsageError } from "./args.js";

/**
 * Formats any error as the CLI's one line, `<message> (<code>)`, and picks the exit status:
 * 2 for usage errors, 1 for everything else.
 */
export function describeError(err: unknown): { line: string; exitCode: number } {
  if (err instanceof UsageError) return { line: `${err.message} (usage_error)`, exitCode: 2 };
  if (err instanceof ValidationError && err.fields.length > 0) {
    const fields = err.fields.map((f) => `${f.field}: ${f.message}`).join("; ");
    return { line: `${err.message}: ${fields} (${err.code})`, exitCode: 1 };
  }
  if (err instanceof SandpitError) return { line: `${err.message} (${err.code})`, exitCode: 1 };
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return { line: `${err.message} (${typeof code === "string" ? code : "error"})`, exitCode: 1 };
  }
  return { line: `${String(err)} (error)`, exitCode: 1 };
}

/** Lays rows out in columns separated by two spaces, the first row being the header. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")
    .concat("\n");
}

/** A duration in a short human form: `45s`, `4m 10s`, `2h 5m`, `3d 4h`. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d}d` : `${d}d ${h % 24}h`;
}

/** A timestamp relative to now: `3m ago`, `in 4m 10s`, or `-` for null. */
export function relativeTime(timestamp: string | null, now: number = Date.now()): string {
  if (timestamp === null) return "-";
  const at = Date.parse(timestamp);
  if (Number.isNaN(at)) return timestamp;
  return at <= now ? `${humanDuration(now - at)} ago` : `in ${humanDuration(at - now)}`;
}

/** A byte count in a short human form: `512 B`, `4.0 KiB`, `1.5 GiB`. */
export function humanBytes(bytes: number | null): string {
  if (bytes === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} ${units[0]}` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Memory in MiB as `512 MiB` or `2 GiB`. */
export function humanMb(mb: number): string {
  return mb >= 1024 && mb % 1024 === 0 ? `${mb / 1024} GiB` : `${mb} MiB`;
}

/** Prints a value as indented JSON followed by a newline. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
