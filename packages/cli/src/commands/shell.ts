import { Sandbox } from "sandpit";
import { stringOption, UsageError } from "../args.js";
import type { CliCommand } from "../command.js";

export const shellCommand: CliCommand = {
  name: "shell",
  usage: "ID [--cwd PATH] [--user USER] [-- CMD [ARG...]]",
  summary: "An interactive shell (or CMD) in a sandbox on a real terminal; exits with its exit code",
  options: { cwd: { type: "string" }, user: { type: "string" } },
  async run({ values, positionals, rest }, ctx) {
    const [id, ...extra] = positionals;
    if (id === undefined) throw new UsageError("shell: missing sandbox ID");
    const command = [...extra, ...rest];
    const sandbox = await Sandbox.get(id, ctx.connection);
    const { stdin, stdout } = ctx;
    const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
    const terminal = await sandbox.terminals.create({
      ...size(),
      ...(command.length > 0 ? { command } : {}),
      ...(stringOption(values, "cwd") !== undefined ? { cwd: stringOption(values, "cwd") } : {}),
      ...(stringOption(values, "user") !== undefined ? { user: stringOption(values, "user") } : {}),
      env: { TERM: process.env.TERM || "xterm-256color" },
      onData: (data) => stdout.write(data),
    });
    // Raw mode: every key (Ctrl-C, arrows, tab) goes to the sandbox's terminal, not to this process.
    const raw = stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    const onInput = (data: Buffer) => terminal.write(data);
    const onResize = () => {
      const { cols, rows } = size();
      terminal.resize(cols, rows);
    };
    stdin.on("data", onInput);
    stdout.on("resize", onResize);
    stdin.resume();
    try {
      return await terminal.wait();
    } finally {
      stdin.off("data", onInput);
      stdout.off("resize", onResize);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    }
  },
};
