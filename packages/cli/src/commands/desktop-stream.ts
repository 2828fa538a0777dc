import { Sandbox } from "sandpit";
import { UsageError } from "../args.js";
import type { CliCommand } from "../command.js";

export const desktopStreamCommand: CliCommand = {
  name: "desktop-stream",
  usage: "ID [--view-only] [--stop]",
  summary: "Start the live view of a desktop sandbox and print its noVNC URL (--stop ends it)",
  options: {
    "view-only": { type: "boolean" },
    stop: { type: "boolean" },
  },
  async run({ positionals, values }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("desktop-stream: missing sandbox ID");
    if (extra !== undefined) throw new UsageError(`desktop-stream: unexpected argument "${extra}"`);
    if (values.stop === true && values["view-only"] === true) {
      throw new UsageError("desktop-stream: --stop and --view-only do not go together");
    }
    const sandbox = await Sandbox.get(id, ctx.connection);
    if (values.stop === true) {
      await sandbox.desktop.stream.stop();
      return 0;
    }
    const stream = await sandbox.desktop.stream.start({ viewOnly: values["view-only"] === true });
    ctx.stdout.write(`${stream.url}\n`);
    return 0;
  },
};
