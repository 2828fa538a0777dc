import { type ParseArgsConfig, parseArgs } from "node:util";

/** Thrown for a malformed command line; the CLI exits with status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Option declarations in the shape `node:util` `parseArgs` takes. */
export type OptionSpecs = NonNullable<ParseArgsConfig["options"]>;

/** Parsed options: a string, a boolean flag or a repeated string, by option name. */
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The parsed command line of one subcommand. */
export interface ParsedArgs {
  values: OptionValues;
  positionals: string[];
  /** Everything after a `--`, untouched. */
  rest: string[];
}

/**
 * Parses a subcommand's arguments strictly: unknown options, missing values and values for flags are
 * usage errors. Arguments after `--` are returned as `rest` without being parsed.
 */
export function parseCommandArgs(command: string, args: string[], options: OptionSpecs): ParsedArgs {
  const separator = args.indexOf("--");
  const head = separator === -1 ? args : args.slice(0, separator);
  const rest = separator === -1 ? [] : args.slice(separator + 1);
  try {
    const { values, positionals } = parseArgs({ args: head, options, strict: true, allowPositionals: true });
    return { values: values as OptionValues, positionals, rest };
  } catch (err) {
    throw new UsageError(`${command}: ${parseArgsMessage(err)}`);
  }
}

function parseArgsMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // parseArgs explains how to pass a value starting with "-"; the first sentence is the one that matters.
  return (
    message
      .split(/\.\s/)[0]
      ?.replace(/\.$/, "")
      .replace(/^Unknown option/, "unknown option")
      .replace(/^Option/, "option") ?? message
  );
}

/** The value of a string option, if given. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

/** Every value of a repeatable string option. */
export function listOption(values: OptionValues, name: string): string[] {
  const value = values[name];
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === "string");
}

/** Whether a boolean flag was given. */
export function flagOption(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/**
 * Parses `K=V` pairs (from repeated `--env` or `--metadata`) into an object. The value may contain `=`.
 *
 * @example parseKeyValues("--env", ["A=1", "B=x=y"]) // { A: "1", B: "x=y" }
 */
export function parseKeyValues(flag: string, pairs: string[]): Record<string, string> {
  const result: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag} expects KEY=VALUE, got "${pair}"`);
    result[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return result;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: `30s`, `5m`, `1h`, `250ms`, or a plain number of milliseconds.
 *
 * @example parseDuration("--timeout", "5m") // 300000
 */
export function parseDuration(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null)
    throw new UsageError(`${flag} expects a duration such as 30s, 5m, 1h or milliseconds, got "${text}"`);
  const ms = Math.round(Number(match[1]) * (DURATION_UNITS[match[2] ?? "ms"] ?? 1));
  if (ms <= 0) throw new UsageError(`${flag} must be longer than 0`);
  return ms;
}

/**
 * Parses a size in MiB: `512`, `512m`, `2g` (also `512mb`, `2gb`, `2GiB`).
 *
 * @example parseSizeMb("--memory", "2g") // 2048
 */
export function parseSizeMb(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(m|mb|mib|g|gb|gib)?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`${flag} expects a size in MiB such as 512, 512m or 2g, got "${text}"`);
  const unit = (match[2] ?? "m").toLowerCase();
  return Math.round(Number(match[1]) * (unit.startsWith("g") ? 1024 : 1));
}

/** Parses a positive whole number. */
export function parseInteger(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${flag} expects a whole number, got "${text}"`);
  return Number(text);
}
