import { type ClusterNode, Nodes } from "sandpit";
import { flagOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanMb, relativeTime, table, toJson } from "../format.js";

export const nodesLsCommand: CliCommand = {
  name: "nodes ls",
  usage: "[--json]",
  summary: "List the cluster's nodes with their state, capacity and load (admin key)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`nodes ls: unexpected argument "${positionals[0]}"`);
    const nodes = await Nodes.list(ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(nodes));
      return 0;
    }
    const rows = [["ID", "STATE", "URL", "SANDBOXES", "CPU", "MEMORY", "VERSION", "HEARTBEAT", "LABELS"]];
    for (const n of nodes) {
      const sandboxes = Object.entries(n.load.sandboxes)
        .map(([status, count]) => `${count} ${status}`)
        .join(", ");
      rows.push([
        n.id,
        n.state,
        n.url,
        `${sandboxes || "0"} (of ${n.capacity.sandboxes})`,
        `${n.load.vcpus}/${n.capacity.vcpus}`,
        `${humanMb(n.load.memoryMb)}/${humanMb(n.capacity.memoryMb)}`,
        n.version,
        relativeTime(n.heartbeatAt),
        Object.entries(n.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(","),
      ]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

function stateCommand(action: "drain" | "undrain", summary: string): CliCommand {
  return {
    name: `nodes ${action}`,
    usage: "NODE... [--json]",
    summary,
    options: { ...jsonOption },
    async run({ values, positionals }, ctx) {
      if (positionals.length === 0) throw new UsageError(`nodes ${action}: missing NODE`);
      const changed: ClusterNode[] = [];
      for (const id of positionals) changed.push(await Nodes[action](id, ctx.connection));
      ctx.stdout.write(
        flagOption(values, "json") ? toJson(changed) : changed.map((n) => `${n.id}  ${n.state}\n`).join(""),
      );
      return 0;
    },
  };
}

export const nodesDrainCommand = stateCommand(
  "drain",
  "Stop placing new sandboxes on nodes; their running sandboxes move elsewhere (admin key)",
);
export const nodesUndrainCommand = stateCommand("undrain", "Let drained nodes take new sandboxes again (admin key)");
