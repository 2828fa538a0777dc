import { sandboxStatuses } from "@sandpit/contract";
import { Sandbox, type SandboxStatus } from "sandpit";
import { flagOption, listOption, parseKeyValues, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanMb, relativeTime, table, toJson } from "../format.js";

export const lsCommand: CliCommand = {
  name: "ls",
  usage: "[--status STATUS[,STATUS...]] [--metadata K=V]... [--all] [--json]",
  summary: "List sandboxes; destroyed ones too with --all",
  options: {
    status: { type: "string", short: "s" },
    metadata: { type: "string", short: "m", multiple: true },
    all: { type: "boolean", short: "a" },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`ls: unexpected argument "${positionals[0]}"`);
    const status = parseStatuses(stringOption(values, "status"));
    const sandboxes = await Sandbox.list(
      {
        status,
        metadata: parseKeyValues("--metadata", listOption(values, "metadata")),
        includeDestroyed: flagOption(values, "all"),
        limit: 1000,
      },
      ctx.connection,
    );
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(sandboxes));
      return 0;
    }
    const rows = [["ID", "STATUS", "TEMPLATE", "CPU", "MEMORY", "CREATED", "EXPIRES", "METADATA"]];
    for (const s of sandboxes) {
      rows.push([
        s.id,
        s.reason === null ? s.status : `${s.status} (${s.reason})`,
        s.template,
        String(s.resources.vcpus),
        humanMb(s.resources.memoryMb),
        relativeTime(s.createdAt),
        s.destroyedAt === null ? relativeTime(s.expiresAt) : "-",
        Object.entries(s.metadata)
          .map(([k, v]) => `${k}=${v}`)
          .join(","),
      ]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

function parseStatuses(text: string | undefined): SandboxStatus[] | undefined {
  if (text === undefined) return undefined;
  const statuses = text.split(",").map((s) => s.trim());
  for (const status of statuses) {
    if (!(sandboxStatuses as readonly string[]).includes(status)) {
      throw new UsageError(`--status must be one of ${sandboxStatuses.join(", ")}; got "${status}"`);
    }
  }
  return statuses as SandboxStatus[];
}
