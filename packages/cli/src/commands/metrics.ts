import { setTimeout as sleep } from "node:timers/promises";
import { type MetricsSample, Sandbox } from "sandpit";
import { flagOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanBytes, relativeTime, toJson } from "../format.js";

/** How many intervals to wait for the first sample of a sandbox that just started. */
const WAIT_INTERVALS = 2;

export const metricsCommand: CliCommand = {
  name: "metrics",
  usage: "ID [--json]",
  summary: "Show a sandbox's latest resource sample (CPU, memory, disk, network, processes)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("metrics: missing sandbox ID");
    if (extra !== undefined) throw new UsageError(`metrics: unexpected argument "${extra}"`);
    const sandbox = await Sandbox.get(id, ctx.connection);
    let metrics = await sandbox.metrics();
    // A sandbox that just started has its first sample one interval later.
    for (let i = 0; i < WAIT_INTERVALS && metrics.samples.length === 0 && sandbox.status === "running"; i++) {
      await sleep(metrics.intervalMs);
      metrics = await sandbox.metrics();
    }
    const latest = metrics.samples.at(-1);
    if (latest === undefined) {
      throw Object.assign(new Error(`no samples of ${id} (it is ${sandbox.status}; samples are taken while it runs)`), {
        code: "no_samples",
      });
    }
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(latest));
      return 0;
    }
    ctx.stdout.write(formatSample(latest, sandbox.resources.vcpus));
    return 0;
  },
};

/** One line per figure, used / limit where there is a limit. */
export function formatSample(s: MetricsSample, vcpus: number): string {
  const lines: [string, string][] = [
    ["at", `${s.at} (${relativeTime(s.at)})`],
    ["cpu", `${s.cpuPercent.toFixed(1)}% of ${vcpus} vCPU${vcpus === 1 ? "" : "s"}`],
    ["memory", `${humanBytes(s.memoryBytes)} / ${humanBytes(s.memoryLimitBytes)}`],
    ["disk", `${humanBytes(s.diskBytes)} / ${humanBytes(s.diskLimitBytes)}`],
    ["network", `rx ${humanBytes(s.networkRxBytes)}, tx ${humanBytes(s.networkTxBytes)}`],
    ["processes", s.processes === null ? "-" : String(s.processes)],
  ];
  const width = Math.max(...lines.map(([k]) => k.length)) + 1;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}\n`).join("");
}
