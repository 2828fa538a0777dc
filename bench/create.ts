// Create → first exec done, Sandpit beside bare `runsc run` + `runsc exec`, alternating so that both see
// the same conditions, with each phase of Sandpit's create as the server timed it (Server-Timing).
// Part of `npm run bench`; alone: npm run bench:create (prints its row, writes bench/results/create-<time>.json)
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { baseTemplateRootfs, RawRunsc } from "./raw-runsc.js";
import { type BenchRow, fmt, printRows, type Summary, summarize, timeIt, writeBenchResults } from "./stats.js";

export interface Api {
  url: string;
  apiKey: string;
}

/** The `Server-Timing` header of a create (`runsc;dur=160.1, agent;dur=20.3`) as phase → milliseconds. */
export function parseServerTiming(header: string | null): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const part of (header ?? "").split(",")) {
    const [name, ...params] = part.trim().split(";");
    const dur = params.find((p) => p.trim().startsWith("dur="));
    if (name && dur) phases[name] = Number(dur.trim().slice(4));
  }
  return phases;
}

/**
 * Creates a sandbox and runs `true` in it through the REST API, as the SDK would; returns the sandbox's id
 * and the phases of the create as the server timed them.
 */
export async function createAndRunTrue(
  api: Api,
  body: Record<string, unknown> = {},
): Promise<{ id: string; phases: Record<string, number> }> {
  const headers = { authorization: `Bearer ${api.apiKey}`, "content-type": "application/json" };
  const res = await fetch(`${api.url}/v1/sandboxes`, { method: "POST", headers, body: JSON.stringify(body) });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  const phases = parseServerTiming(res.headers.get("server-timing"));
  const exec = await fetch(`${api.url}/v1/sandboxes/${id}/exec`, {
    method: "POST",
    headers,
    body: JSON.stringify({ command: "true" }),
  });
  const result = (await exec.json()) as { exitCode?: number };
  if (exec.status !== 200 || result.exitCode !== 0) throw new Error(`exec: ${exec.status} ${JSON.stringify(result)}`);
  return { id, phases };
}

export async function destroySandbox(api: Api, id: string): Promise<void> {
  await fetch(`${api.url}/v1/sandboxes/${id}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${api.apiKey}` },
  });
}

/** Per phase, p50 and p95 over the creates (a phase missing from a create counts as absent, not zero). */
export function summarizePhases(all: Record<string, number>[]): Record<string, Summary> {
  const names = [...new Set(all.flatMap((p) => Object.keys(p)))];
  return Object.fromEntries(
    names.map((n) => [n, summarize(all.map((p) => p[n]).filter((v): v is number => v !== undefined))]),
  );
}

/** `runsc 160.1, agent 20.3, ...` by p50, largest first. */
export function describePhases(phases: Record<string, Summary>): string {
  return Object.entries(phases)
    .filter(([name]) => name !== "total")
    .sort(([, a], [, b]) => b.p50 - a.p50)
    .map(([name, s]) => `${name} ${s.p50.toFixed(1)}`)
    .join(", ");
}

export interface CreateBenchResults {
  sandpit: Summary;
  raw: Summary;
  /** Per phase of Sandpit's create (server-side), p50/p95 over the creates. */
  phases: Record<string, Summary>;
}

export async function benchCreate(
  api: Api,
  raw: RawRunsc,
  opts: { creates: number; log: (line: string) => void },
): Promise<{ row: BenchRow; results: CreateBenchResults }> {
  opts.log("create → first exec");
  const rawId = (i: number) => `benchcreate${String(i).padStart(9, "0")}`;
  const rawTimes: number[] = [];
  const spTimes: number[] = [];
  const phases: Record<string, number>[] = [];
  for (let i = 0; i < opts.creates; i++) {
    rawTimes.push(
      await timeIt(async () => {
        await raw.start(rawId(i));
        await raw.exec(rawId(i), "/bin/true");
      }),
    );
    await raw.destroy(rawId(i));
    let created: Awaited<ReturnType<typeof createAndRunTrue>> | undefined;
    spTimes.push(
      await timeIt(async () => {
        created = await createAndRunTrue(api);
      }),
    );
    phases.push(created!.phases);
    await destroySandbox(api, created!.id);
  }
  const results = { sandpit: summarize(spTimes), raw: summarize(rawTimes), phases: summarizePhases(phases) };
  return {
    row: {
      metric: "create → first exec done",
      sandpit: `${fmt(results.sandpit)} (p50 phases, ms: ${describePhases(results.phases)})`,
      raw: fmt(results.raw),
      ratio: `${(results.sandpit.p50 / results.raw.p50).toFixed(2)}×`,
      goal: "≤ 1.25× raw",
    },
    results,
  };
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
  const server = await startTestServer();
  const raw = await RawRunsc.create(await baseTemplateRootfs());
  try {
    const { row, results } = await benchCreate(server, raw, {
      creates: Number(process.env.BENCH_CREATES ?? 8),
      log: (line) => process.stderr.write(`[bench] ${line}\n`),
    });
    printRows([row]);
    await writeBenchResults("create", { row, results });
  } finally {
    await raw.close();
    await server.close();
  }
}
