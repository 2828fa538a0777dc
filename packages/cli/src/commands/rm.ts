import { Sandbox, SandpitError } from "sandpit";
import { UsageError } from "../args.js";
import type { CliCommand } from "../command.js";
import { describeError } from "../format.js";

export const rmCommand: CliCommand = {
  name: "rm",
  usage: "ID...",
  summary: "Destroy sandboxes, printing each id destroyed",
  options: {},
  async run({ positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("rm: missing sandbox ID");
    let failed = 0;
    for (const id of positionals) {
      try {
        await Sandbox.kill(id, ctx.connection);
        ctx.stdout.write(`${id}\n`);
      } catch (err) {
        if (!(err instanceof SandpitError)) throw err;
        failed++;
        ctx.stderr.write(`sandpit: ${id}: ${describeError(err).line}\n`);
      }
    }
    return failed === 0 ? 0 : 1;
  },
};
