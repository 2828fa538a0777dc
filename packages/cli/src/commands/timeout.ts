import { Sandbox } from "sandpit";
import { flagOption, parseDuration, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { relativeTime, toJson } from "../format.js";

export const timeoutCommand: CliCommand = {
  name: "timeout",
  usage: "ID DURATION [--json]",
  summary: "Destroy the sandbox DURATION from now (30s, 5m, 1h or milliseconds) instead of at its current expiry",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [id, duration, extra] = positionals;
    if (id === undefined || duration === undefined) throw new UsageError("timeout: expects ID and DURATION");
    if (extra !== undefined) throw new UsageError(`timeout: unexpected argument "${extra}"`);
    const timeoutMs = parseDuration("DURATION", duration);
    const sandbox = await Sandbox.get(id, ctx.connection);
    await sandbox.setTimeout(timeoutMs);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(sandbox));
      return 0;
    }
    ctx.stdout.write(`${sandbox.id} expires at ${sandbox.expiresAt ?? "-"} (${relativeTime(sandbox.expiresAt)})\n`);
    return 0;
  },
};
