import { Sandbox } from "sandpit";
import { parseDuration, UsageError } from "../args.js";
import type { CliCommand } from "../command.js";
import { relativeTime } from "../format.js";

export const timeoutCommand: CliCommand = {
  name: "timeout",
  usage: "ID DURATION",
  summary: "Destroy the sandbox DURATION from now (30s, 5m, 1h or milliseconds) instead of at its current expiry",
  options: {},
  async run({ positionals }, ctx) {
    const [id, duration, extra] = positionals;
    if (id === undefined || duration === undefined) throw new UsageError("timeout: expects ID and DURATION");
    if (extra !== undefined) throw new UsageError(`timeout: unexpected argument "${extra}"`);
    const timeoutMs = parseDuration("DURATION", duration);
    const sandbox = await Sandbox.get(id, ctx.connection);
    await sandbox.setTimeout(timeoutMs);
    ctx.stdout.write(`${sandbox.id} expires at ${sandbox.expiresAt ?? "-"} (${relativeTime(sandbox.expiresAt)})\n`);
    return 0;
  },
};
