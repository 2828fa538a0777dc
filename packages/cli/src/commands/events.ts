import { eventTypes } from "@sandpit/contract";
import { Events, type EventType, type SandpitEvent } from "sandpit";
import { flagOption, parseDuration, parseInteger, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";

/** The fields of an event's data worth a glance, in this order. */
const DETAIL_FIELDS = ["reason", "action", "template", "snapshotId", "warmPool"];

/** `AT  TYPE  SANDBOX  details`, one line per event, so that a followed stream lines up too. */
function line(e: SandpitEvent): string {
  const details = DETAIL_FIELDS.filter((k) => e.data[k] !== undefined && e.data[k] !== null)
    .map((k) => `${k}=${String(e.data[k])}`)
    .join(" ");
  return `${e.at}  ${e.type.padEnd(17)}  ${e.sandboxId}${details ? `  ${details}` : ""}\n`;
}

function parseTypes(text: string | undefined): EventType[] | undefined {
  if (text === undefined) return undefined;
  const types = text.split(",").map((t) => t.trim());
  for (const t of types) {
    if (!(eventTypes as readonly string[]).includes(t)) {
      throw new UsageError(`--type must be one of ${eventTypes.join(", ")}; got "${t}"`);
    }
  }
  return types as EventType[];
}

/** `--since 1h` (that long ago) or an RFC 3339 time. */
function parseSince(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    if (Number.isNaN(Date.parse(text))) throw new UsageError(`--since: not a time: "${text}"`);
    return new Date(text).toISOString();
  }
  return new Date(Date.now() - parseDuration("--since", text)).toISOString();
}

export const eventsCommand: CliCommand = {
  name: "events",
  usage: "[--follow] [--sandbox ID] [--type TYPE[,TYPE...]] [--since 1h|TIME] [--limit N] [--json]",
  summary: "Show lifecycle events (created, paused, resumed, expired, error, destroyed); --follow streams new ones",
  options: {
    follow: { type: "boolean", short: "f" },
    sandbox: { type: "string" },
    type: { type: "string", short: "t" },
    since: { type: "string" },
    limit: { type: "string", short: "n" },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`events: unexpected argument "${positionals[0]}"`);
    const limitText = stringOption(values, "limit");
    const limit = limitText === undefined ? 50 : parseInteger("--limit", limitText);
    if (limit < 1 || limit > 1000) throw new UsageError("--limit must be between 1 and 1000");
    const sandboxId = stringOption(values, "sandbox");
    const type = parseTypes(stringOption(values, "type"));
    const since = parseSince(stringOption(values, "since"));
    const json = flagOption(values, "json");
    const print = (e: SandpitEvent) => ctx.stdout.write(json ? `${JSON.stringify(e)}\n` : line(e));

    const filter = {
      ...(sandboxId === undefined ? {} : { sandboxId }),
      ...(type === undefined ? {} : { type }),
      ...(since === undefined ? {} : { since }),
    };
    // The newest events, printed oldest first like a log.
    const { events } = await Events.list({ ...filter, limit, order: "desc" }, ctx.connection);
    const recent = events.reverse();
    for (const e of recent) print(e);
    if (!flagOption(values, "follow")) return 0;

    // Continues right after what was printed (or from the start when nothing matched yet): no gap.
    const after = recent.length === 0 ? 0 : recent[recent.length - 1]!.id;
    for await (const e of Events.stream({ ...filter, after }, ctx.connection)) print(e);
    return 0;
  },
};
