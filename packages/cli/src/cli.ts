import { readFileSync } from "node:fs";
import { type ParsedArgs, parseCommandArgs, stringOption, UsageError } from "./args.js";
import { type CliCommand, type Context, globalOptions } from "./command.js";
import {
  contextsCreateCommand,
  contextsLsCommand,
  contextsRestartCommand,
  contextsRmCommand,
  runCodeCommand,
} from "./commands/code.js";
import { cpCommand } from "./commands/cp.js";
import { createCommand } from "./commands/create.js";
import { clickCommand, screenshotCommand, typeCommand } from "./commands/desktop.js";
import { desktopStreamCommand } from "./commands/desktop-stream.js";
import { eventsCommand } from "./commands/events.js";
import { execCommand } from "./commands/exec.js";
import { imagesLsCommand, imagesPullCommand } from "./commands/images.js";
import { infoCommand } from "./commands/info.js";
import { keysCreateCommand } from "./commands/keys.js";
import { forkCommand, pauseCommand, resumeCommand } from "./commands/lifecycle.js";
import { lsCommand } from "./commands/ls.js";
import { metricsCommand } from "./commands/metrics.js";
import { egressLogCommand, logsCommand, policyCommand, portsCommand } from "./commands/network.js";
import { nodesDrainCommand, nodesLsCommand, nodesUndrainCommand } from "./commands/nodes.js";
import { rmCommand } from "./commands/rm.js";
import { serveCommand } from "./commands/serve.js";
import { shellCommand } from "./commands/shell.js";
import { snapshotCreateCommand, snapshotLsCommand, snapshotRmCommand } from "./commands/snapshots.js";
import { templatesBuildCommand, templatesLsCommand, templatesRmCommand } from "./commands/templates.js";
import { timeoutCommand } from "./commands/timeout.js";
import { volumesCreateCommand, volumesLsCommand, volumesRmCommand } from "./commands/volumes.js";
import { type CompletionShell, completionScript, completionShells } from "./completion.js";
import { describeError } from "./format.js";

/** Every subcommand, in the order `sandpit --help` lists them. */
export const commands: CliCommand[] = [
  createCommand,
  lsCommand,
  infoCommand,
  metricsCommand,
  pauseCommand,
  resumeCommand,
  snapshotCreateCommand,
  snapshotLsCommand,
  snapshotRmCommand,
  forkCommand,
  execCommand,
  logsCommand,
  runCodeCommand,
  contextsLsCommand,
  contextsCreateCommand,
  contextsRestartCommand,
  contextsRmCommand,
  cpCommand,
  screenshotCommand,
  clickCommand,
  typeCommand,
  rmCommand,
  timeoutCommand,
  portsCommand,
  policyCommand,
  egressLogCommand,
  shellCommand,
  desktopStreamCommand,
  eventsCommand,
  templatesLsCommand,
  templatesBuildCommand,
  templatesRmCommand,
  imagesLsCommand,
  imagesPullCommand,
  volumesLsCommand,
  volumesCreateCommand,
  volumesRmCommand,
  keysCreateCommand,
  nodesLsCommand,
  nodesDrainCommand,
  nodesUndrainCommand,
  serveCommand,
];

/** `sandpit completion bash|zsh`: generated from the table above, so it knows every command and option. */
const completionCommand: CliCommand = {
  name: "completion",
  usage: "bash|zsh",
  summary: 'Print a shell completion script (e.g. eval "$(sandpit completion bash)" in ~/.bashrc)',
  options: {},
  async run({ positionals }, ctx) {
    const [shell, extra] = positionals;
    if (!completionShells.includes(shell as CompletionShell) || extra !== undefined) {
      throw new UsageError(`completion: expects one of ${completionShells.join(", ")}`);
    }
    ctx.stdout.write(completionScript(shell as CompletionShell, commands, globalOptions));
    return 0;
  },
};
commands.push(completionCommand);

/** Commands whose name has two words: the first names the group. */
const GROUPS = new Set(commands.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]!));

/** The streams a run writes to; the process's own by default. */
export type Io = Pick<Context, "stdout" | "stderr" | "stdin">;

/**
 * Runs the CLI on `argv` (without `node` and the script) and resolves with the exit status:
 * 0 on success, the command's own status for `exec` (1 for a cell that raised, for `run-code`), 1 for errors
 * and 2 for usage errors.
 * Errors are printed as one line, `sandpit: <message> (<code>)`, on stderr.
 */
export async function run(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    const { line, exitCode } = describeError(err);
    io.stderr.write(`sandpit: ${line}\n`);
    return exitCode;
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  // Global options may come before the command name; everything else belongs to the command.
  const leading: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith("-") && argv[i] !== "--") {
    const arg = argv[i]!;
    if (arg === "--version" || arg === "-v") {
      io.stdout.write(`${version()}\n`);
      return 0;
    }
    leading.push(arg);
    if ((arg === "--url" || arg === "--api-key") && i + 1 < argv.length) leading.push(argv[++i]!);
    i++;
  }
  const name = argv[i];
  if (name === undefined || name === "help") {
    const wantsHelp = name === "help" || leading.includes("--help") || leading.includes("-h");
    (wantsHelp ? io.stdout : io.stderr).write(usage());
    return wantsHelp ? 0 : 2;
  }
  let fullName = name;
  let rest = argv.slice(i + 1);
  if (GROUPS.has(name)) {
    const sub = rest[0];
    if (sub === undefined || sub.startsWith("-")) {
      throw new UsageError(`${name}: missing subcommand (${subcommandsOf(name)})`);
    }
    fullName = `${name} ${sub}`;
    rest = rest.slice(1);
  }
  const command = commands.find((c) => c.name === fullName);
  if (command === undefined) {
    throw new UsageError(
      GROUPS.has(name)
        ? `${name}: unknown subcommand "${fullName.slice(name.length + 1)}" (${subcommandsOf(name)})`
        : `unknown command "${name}"; run sandpit --help`,
    );
  }
  const args: ParsedArgs = parseCommandArgs(command.name, [...leading, ...rest], {
    ...globalOptions,
    ...command.options,
  });
  if (args.values.help === true) {
    io.stdout.write(commandUsage(command));
    return 0;
  }
  const apiUrl = stringOption(args.values, "url");
  const apiKey = stringOption(args.values, "api-key");
  const ctx: Context = {
    ...io,
    connection: { ...(apiUrl === undefined ? {} : { apiUrl }), ...(apiKey === undefined ? {} : { apiKey }) },
  };
  return command.run(args, ctx);
}

function subcommandsOf(group: string): string {
  return commands
    .filter((c) => c.name.startsWith(`${group} `))
    .map((c) => c.name.slice(group.length + 1))
    .join(", ");
}

function commandUsage(command: CliCommand): string {
  return `Usage: sandpit ${command.name} ${command.usage}\n\n${command.summary}.\n\n${GLOBAL_HELP}`;
}

const GLOBAL_HELP = `Global options:
  --url URL        Sandpit API URL (env SANDPIT_URL, default http://127.0.0.1:8080)
  --api-key KEY    API key (env SANDPIT_API_KEY)
  -h, --help       Show help
`;

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: sandpit [--url URL] [--api-key KEY] COMMAND [ARGS]

Sandpit: self-hosted sandboxes on gVisor.

Commands:
${lines.join("\n")}

${GLOBAL_HELP}
Durations accept 30s, 5m, 1h or milliseconds. Run "sandpit COMMAND --help" for a command's options.
`;
}

function version(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return typeof pkg === "object" && pkg !== null && "version" in pkg ? String(pkg.version) : "unknown";
}
