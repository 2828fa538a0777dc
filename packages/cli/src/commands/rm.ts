import { Sandbox, SandpitError } from "sandpit";
import { flagOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { describeError, toJson } from "../format.js";

export const rmCommand: CliCommand = {
  name: "rm",
  usage: "ID... [--json]",
  summary: "Destroy sandboxes, printing each id destroyed (--json: the list of ids destroyed)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("rm: missing sandbox ID");
    const json = flagOption(values, "json");
    const destroyed: string[] = [];
    let failed = 0;
    for (const id of positionals) {
      try {
        await Sandbox.kill(id, ctx.connection);
        destroyed.push(id);
        if (!json) ctx.stdout.write(`${id}\n`);
      } catch (err) {
        if (!(err instanceof SandpitError)) throw err;
        failed++;
        ctx.stderr.write(`sandpit: ${id}: ${describeError(err).line}\n`);
      }
    }
    if (json) ctx.stdout.write(toJson(destroyed));
    return failed === 0 ? 0 : 1;
  },
};
