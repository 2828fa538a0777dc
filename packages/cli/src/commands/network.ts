import { type EgressLogEntry, type EgressLogFilter, type NetworkPolicyInput, Sandbox } from "sandpit";
import { flagOption, listOption, parseInteger, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { table, toJson } from "../format.js";
import { singleId } from "./lifecycle.js";

export const portsCommand: CliCommand = {
  name: "ports",
  usage: "ID [--json]",
  summary: "List a sandbox's exposed ports and their URLs",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("ports", positionals), ctx.connection);
    const ports = await sandbox.ports();
    if (flagOption(values, "json")) ctx.stdout.write(toJson(ports));
    else
      ctx.stdout.write(
        table([["PORT", "URL", "HOST URL"], ...ports.ports.map((p) => [String(p.port), p.url, p.hostUrl ?? "-"])]),
      );
    return 0;
  },
};

const entryLine = (e: EgressLogEntry) =>
  [e.at, e.decision, e.protocol, `${e.domain ?? e.ip ?? "-"}${e.port === null ? "" : `:${e.port}`}`, e.rule].join("  ");

export const egressLogCommand: CliCommand = {
  name: "egress-log",
  usage: "ID [--denied | --allowed] [--since TIME] [--limit N] [--follow] [--json]",
  summary: "Show a sandbox's outbound connection attempts; --follow keeps printing new ones (--json: one per line)",
  options: {
    denied: { type: "boolean" },
    allowed: { type: "boolean" },
    since: { type: "string" },
    limit: { type: "string" },
    follow: { type: "boolean", short: "f" },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("egress-log", positionals), ctx.connection);
    if (flagOption(values, "denied") && flagOption(values, "allowed")) {
      throw new UsageError("egress-log: --denied and --allowed exclude each other");
    }
    const decision: EgressLogFilter["decision"] = flagOption(values, "denied")
      ? "denied"
      : flagOption(values, "allowed")
        ? "allowed"
        : undefined;
    const limit = stringOption(values, "limit");
    const filter: EgressLogFilter = {
      ...(decision ? { decision } : {}),
      ...(stringOption(values, "since") ? { since: stringOption(values, "since") } : {}),
      ...(limit === undefined ? {} : { limit: parseInteger("--limit", limit) }),
    };
    const json = flagOption(values, "json");
    if (flagOption(values, "follow")) {
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      for await (const entry of sandbox.followEgressLog({ ...filter, signal: stop.signal })) {
        ctx.stdout.write(json ? `${JSON.stringify(entry)}\n` : `${entryLine(entry)}\n`);
      }
      return 0;
    }
    const entries = await sandbox.egressLog(filter);
    ctx.stdout.write(json ? toJson(entries) : entries.map((e) => `${entryLine(e)}\n`).join(""));
    return 0;
  },
};

export const policyCommand: CliCommand = {
  name: "policy",
  usage:
    "ID (--allow-all | --deny-all | [--allow-domain D]… [--allow-cidr C]… [--allow-port P]… [--deny-domain D]… [--deny-cidr C]…) [--json]",
  summary:
    "Replace a running sandbox's egress policy (applied at once); allow/deny flags make a custom policy that denies the rest",
  options: {
    "allow-all": { type: "boolean" },
    "deny-all": { type: "boolean" },
    "allow-domain": { type: "string", multiple: true },
    "allow-cidr": { type: "string", multiple: true },
    "allow-port": { type: "string", multiple: true },
    "deny-domain": { type: "string", multiple: true },
    "deny-cidr": { type: "string", multiple: true },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    const id = singleId("policy", positionals);
    const rules = ["allow-domain", "allow-cidr", "allow-port", "deny-domain", "deny-cidr"].some(
      (flag) => listOption(values, flag).length > 0,
    );
    const modes = [flagOption(values, "allow-all"), flagOption(values, "deny-all"), rules].filter(Boolean).length;
    if (modes !== 1) {
      throw new UsageError("policy: give exactly one of --allow-all, --deny-all, or allow/deny rules");
    }
    const policy: NetworkPolicyInput = flagOption(values, "allow-all")
      ? { mode: "allow-all" }
      : flagOption(values, "deny-all")
        ? { mode: "deny-all" }
        : {
            mode: "custom",
            allow: {
              domains: listOption(values, "allow-domain"),
              cidrs: listOption(values, "allow-cidr"),
              ports: listOption(values, "allow-port").map((p) => parseInteger("--allow-port", p)),
            },
            deny: { domains: listOption(values, "deny-domain"), cidrs: listOption(values, "deny-cidr") },
          };
    const sandbox = await Sandbox.get(id, ctx.connection);
    const info = await sandbox.setNetworkPolicy(policy);
    ctx.stdout.write(flagOption(values, "json") ? toJson(info) : `${info.id} ${JSON.stringify(info.networkPolicy)}\n`);
    return 0;
  },
};

export const logsCommand: CliCommand = {
  name: "logs",
  usage: "ID CMD_ID [--json]",
  summary: "Print a command's output from its start, following it until it exits (--json: its events, one per line)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [id, commandId, extra] = positionals;
    if (id === undefined || commandId === undefined) throw new UsageError("logs: expects ID and CMD_ID");
    if (extra !== undefined) throw new UsageError(`logs: unexpected argument "${extra}"`);
    const sandbox = await Sandbox.get(id, ctx.connection);
    const handle = await sandbox.commands.connect(commandId);
    const json = flagOption(values, "json");
    let exitCode = 0;
    for await (const event of handle.logs()) {
      if (json) ctx.stdout.write(`${JSON.stringify(event)}\n`);
      else if (event.type === "stdout") ctx.stdout.write(event.data);
      else if (event.type === "stderr") ctx.stderr.write(event.data);
      if (event.type === "exit") exitCode = event.exitCode;
    }
    return json ? 0 : exitCode;
  },
};
