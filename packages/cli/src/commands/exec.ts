import { text } from "node:stream/consumers";
import { Sandbox } from "sandpit";
import { flagOption, listOption, parseDuration, parseKeyValues, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanDuration, toJson } from "../format.js";

/** Exit status when the command ran past `--timeout`, as coreutils `timeout` does. */
export const TIMED_OUT_EXIT_CODE = 124;

export const execCommand: CliCommand = {
  name: "exec",
  usage: "ID [--cwd PATH] [--env K=V]... [--timeout DURATION] [--stdin] [--background] [--json] -- CMD [ARG...]",
  summary:
    "Run a command in a sandbox, streaming its output; exits with the command's exit code. --background prints " +
    "its command id (follow it with logs ID CMD_ID); --json prints the result (or {commandId, pid}) as JSON",
  options: {
    cwd: { type: "string" },
    env: { type: "string", short: "e", multiple: true },
    timeout: { type: "string" },
    stdin: { type: "boolean", short: "i" },
    background: { type: "boolean", short: "d" },
    ...jsonOption,
  },
  async run({ values, positionals, rest }, ctx) {
    const [id, ...beforeSeparator] = positionals;
    if (id === undefined) throw new UsageError("exec: missing sandbox ID");
    const argv = [...beforeSeparator, ...rest];
    if (argv.length === 0) throw new UsageError("exec: missing command (sandpit exec ID -- CMD [ARG...])");
    const timeout = stringOption(values, "timeout");
    const timeoutMs = timeout === undefined ? undefined : parseDuration("--timeout", timeout);
    const env = parseKeyValues("--env", listOption(values, "env"));
    const sandbox = await Sandbox.get(id, ctx.connection);
    const json = flagOption(values, "json");
    const options = {
      cwd: stringOption(values, "cwd"),
      env,
      timeoutMs,
      stdin: flagOption(values, "stdin") ? await text(ctx.stdin) : undefined,
    };
    if (flagOption(values, "background")) {
      const handle = await sandbox.commands.run(argv, { ...options, background: true });
      ctx.stdout.write(json ? toJson({ commandId: handle.commandId, pid: handle.pid }) : `${handle.commandId}\n`);
      return 0;
    }
    const result = await sandbox.commands.run(
      argv,
      json
        ? options
        : { ...options, onStdout: (data) => ctx.stdout.write(data), onStderr: (data) => ctx.stderr.write(data) },
    );
    if (json) ctx.stdout.write(toJson(result));
    if (result.timedOut) {
      ctx.stderr.write(`sandpit: command timed out after ${humanDuration(result.durationMs)} (timeout)\n`);
      return TIMED_OUT_EXIT_CODE;
    }
    if (result.truncated) ctx.stderr.write("sandpit: output went over the server's cap and was cut (truncated)\n");
    return result.exitCode >= 0 && result.exitCode <= 255 ? result.exitCode : 1;
  },
};
