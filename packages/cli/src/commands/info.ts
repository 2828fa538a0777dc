import { Sandbox } from "sandpit";
import { flagOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanMb, relativeTime, toJson } from "../format.js";

export const infoCommand: CliCommand = {
  name: "info",
  usage: "ID [--json]",
  summary: "Show one sandbox",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("info: missing sandbox ID");
    if (extra !== undefined) throw new UsageError(`info: unexpected argument "${extra}"`);
    const sandbox = await Sandbox.get(id, ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(sandbox));
      return 0;
    }
    const when = (t: string | null) => (t === null ? "-" : `${t} (${relativeTime(t)})`);
    const lines: [string, string][] = [
      ["id", sandbox.id],
      ["status", sandbox.status],
      ["reason", sandbox.reason ?? "-"],
      ["template", sandbox.template],
      ["vcpus", String(sandbox.resources.vcpus)],
      ["memory", humanMb(sandbox.resources.memoryMb)],
      ["disk", humanMb(sandbox.resources.diskMb)],
      ["cwd", sandbox.cwd],
      ["env", sandbox.envKeys.length === 0 ? "-" : sandbox.envKeys.join(", ")],
      [
        "metadata",
        Object.keys(sandbox.metadata).length === 0
          ? "-"
          : Object.entries(sandbox.metadata)
              .map(([k, v]) => `${k}=${v}`)
              .join(", "),
      ],
      ["created", when(sandbox.createdAt)],
      ["started", when(sandbox.startedAt)],
      ["expires", when(sandbox.expiresAt)],
      ["destroyed", when(sandbox.destroyedAt)],
    ];
    const width = Math.max(...lines.map(([k]) => k.length)) + 1;
    ctx.stdout.write(lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}\n`).join(""));
    return 0;
  },
};
