import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "../tests/helpers/paths.js";

/** Percentile by nearest rank over a copy of the samples. */
export function percentile(samples: number[], p: number): number {
  if (!samples.length) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
}

export const summarize = (samples: number[]): Summary => ({
  n: samples.length,
  p50: percentile(samples, 50),
  p95: percentile(samples, 95),
});

export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Host memory in use (MemTotal - MemAvailable), bytes. */
export async function hostMemoryUsed(): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const info = await readFile("/proc/meminfo", "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(info)?.[1] ?? 0);
  return (kb("MemTotal") - kb("MemAvailable")) * 1024;
}

/** One row of a benchmark table: Sandpit's figure beside what it is compared with, measured in the same run. */
export interface BenchRow {
  metric: string;
  sandpit: string;
  raw: string;
  ratio: string;
  goal: string;
}

/** Prints rows as a Markdown table. */
export function printRows(rows: BenchRow[]): void {
  const header: BenchRow = {
    metric: "metric",
    sandpit: "sandpit",
    raw: "raw runsc (same run)",
    ratio: "ratio",
    goal: "goal",
  };
  const keys = Object.keys(header) as (keyof BenchRow)[];
  const widths = keys.map((k) => Math.max(...[header, ...rows].map((r) => r[k].length)));
  const line = (r: BenchRow) => `| ${keys.map((k, i) => r[k].padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));
}

export const ms = (n: number) => `${n.toFixed(1)} ms`;
export const fmt = (s: Summary) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)}`;

/** Writes a bench's results to bench/results/<name>-<time>.json and says where. */
export async function writeBenchResults(name: string, results: Record<string, unknown>): Promise<void> {
  const dir = path.join(repoRoot, "bench", "results");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(file, `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`);
  console.log(`\nwritten to ${path.relative(repoRoot, file)}`);
}
