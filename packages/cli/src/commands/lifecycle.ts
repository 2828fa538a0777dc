import { Sandbox } from "sandpit";
import { flagOption, parseInteger, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { table, toJson } from "../format.js";

/** The single ID a command takes, or a usage error naming what is wrong. */
export function singleId(command: string, positionals: string[], what = "ID"): string {
  const [id, extra] = positionals;
  if (id === undefined) throw new UsageError(`${command}: missing ${what}`);
  if (extra !== undefined) throw new UsageError(`${command}: unexpected argument "${extra}"`);
  return id;
}

export const pauseCommand: CliCommand = {
  name: "pause",
  usage: "ID [--json]",
  summary: "Pause a sandbox: its memory and processes are saved and it stops using CPU and memory",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("pause", positionals), ctx.connection);
    await sandbox.pause();
    ctx.stdout.write(flagOption(values, "json") ? toJson(sandbox) : `${sandbox.id} ${sandbox.status}\n`);
    return 0;
  },
};

export const resumeCommand: CliCommand = {
  name: "resume",
  usage: "ID [--json]",
  summary: "Resume a paused sandbox with its processes and memory as they were",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("resume", positionals), ctx.connection);
    await sandbox.resume();
    ctx.stdout.write(flagOption(values, "json") ? toJson(sandbox) : `${sandbox.id} ${sandbox.status}\n`);
    return 0;
  },
};

export const forkCommand: CliCommand = {
  name: "fork",
  usage: "ID [--count N] [--json]",
  summary: "Start N (default 1) new sandboxes that continue this one, processes and memory included",
  options: { count: { type: "string" }, ...jsonOption },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("fork", positionals), ctx.connection);
    const count = stringOption(values, "count");
    const children = await sandbox.fork(count === undefined ? 1 : parseInteger("--count", count));
    if (flagOption(values, "json")) ctx.stdout.write(toJson(children));
    else ctx.stdout.write(table([["ID", "STATUS"], ...children.map((c) => [c.id, c.status])]));
    return 0;
  },
};
