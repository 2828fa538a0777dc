import type { ConnectionOptions } from "sandpit";
import type { OptionSpecs, ParsedArgs } from "./args.js";

/** Where a command writes and how it reaches the server. */
export interface Context {
  /** `--url` and `--api-key`; the SDK falls back to SANDPIT_URL and SANDPIT_API_KEY. */
  connection: ConnectionOptions;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
}

/** One subcommand of the CLI. */
export interface CliCommand {
  /** Name as typed, e.g. `ls` or `templates build`. */
  name: string;
  /** Arguments after the name, for the usage line. */
  usage: string;
  /** One line of help. */
  summary: string;
  /** Options besides the global ones. */
  options: OptionSpecs;
  /** Runs the command and resolves with the process exit status. */
  run(args: ParsedArgs, ctx: Context): Promise<number>;
}

/** Options every command accepts. */
export const globalOptions: OptionSpecs = {
  url: { type: "string" },
  "api-key": { type: "string" },
  help: { type: "boolean", short: "h" },
};

export const jsonOption: OptionSpecs = { json: { type: "boolean" } };
