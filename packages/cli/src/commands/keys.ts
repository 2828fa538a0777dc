import { flagOption, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { toJson } from "../format.js";

export const keysCreateCommand: CliCommand = {
  name: "keys create",
  usage: "--org NAME [--format sandpit|e2b] [--data-dir DIR] [--json]",
  summary: "Create an API key for an organisation in the local server's data directory, and print it",
  options: { org: { type: "string" }, format: { type: "string" }, "data-dir": { type: "string" }, ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`keys create: unexpected argument "${positionals[0]}"`);
    const org = stringOption(values, "org");
    if (org === undefined || org === "") throw new UsageError("keys create: --org NAME is required");
    // Loaded on demand: the server (SQLite, fastify) is only needed by the local admin commands.
    const { createApiKey } = await import("@sandpit/server");
    const dataDir = stringOption(values, "data-dir");
    const format = stringOption(values, "format") ?? "sandpit";
    if (format !== "sandpit" && format !== "e2b") throw new UsageError("keys create: --format is sandpit or e2b");
    const created = await createApiKey({ org, format, ...(dataDir === undefined ? {} : { dataDir }) });
    ctx.stdout.write(flagOption(values, "json") ? toJson(created) : `${created.key}\n`);
    return 0;
  },
};
