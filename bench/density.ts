// Many sandboxes on one host, under the server's default hibernation: creates N (bounded concurrency)
// and at 100/250/500 (the steps up to N), once the host has rested 20 s, measures create p50 of the
// batch, exec p50 of a live and of a hibernated sandbox, API p99 (GET a sandbox, under concurrent load),
// host CPU (from /proc/stat) and memory (PSS of the runsc processes per live sandbox; host used memory per
// sandbox), then the time to destroy all. Sandboxes live 24 h: the default 5-minute timeout would expire
// the first batches before the last is made.
// Usage: npm run bench:density [N]  (default 100; prints a table, writes bench/results/density-<time>.json)
import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { type Api, describePhases, parseServerTiming, summarizePhases } from "./create.js";
import { ROOMY } from "./server-env.js";
import { hostMemoryUsed, percentile, type Summary, timeIt } from "./stats.js";

const N = Number(process.argv[2] ?? process.env.BENCH_DENSITY ?? 100);
const STEPS = [...new Set([100, 250, 500].filter((s) => s < N).concat(N))];
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
/**
 * The server's own hibernation settings unless these are set: its quiet period (5 min) and its live-idle
 * limit (8 per CPU), which is what keeps a host of hundreds from spinning.
 */
const HIBERNATE_AFTER_MS = process.env.BENCH_HIBERNATE_AFTER_MS;
const LIVE_IDLE_MAX = process.env.BENCH_LIVE_IDLE_MAX;
const CPU_WINDOW_MS = 10_000;
/** Wait after each batch before measuring: longer than the server's least quiet time under pressure (15 s). */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 20_000);

function log(line: string) {
  process.stderr.write(`[density] ${line}\n`);
}

async function call<T>(
  api: Api,
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(`${api.url}/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${api.apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T, headers: res.headers };
}

/** Runs `task` over `items` with at most `limit` at a time; returns each one's milliseconds (or an error). */
async function pool<T>(items: T[], limit: number, task: (item: T) => Promise<unknown>): Promise<(number | Error)[]> {
  const out: (number | Error)[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await timeIt(() => task(items[i]!)).catch((e: unknown) =>
          e instanceof Error ? e : new Error(String(e)),
        );
      }
    }),
  );
  return out;
}

/** Busy fraction of all CPUs over `ms`, from /proc/stat (everything but idle and iowait). */
async function hostCpu(ms: number): Promise<number> {
  const read = async () => {
    const fields = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  const a = await read();
  await new Promise((r) => setTimeout(r, ms));
  const b = await read();
  return 1 - (b.idle - a.idle) / (b.total - a.total);
}

/** PSS (bytes) of the live processes whose argv names `stateDir`: runsc sandboxes and gofers. */
async function runscPss(stateDir: string): Promise<{ bytes: number; processes: number; threads: number }> {
  let bytes = 0;
  let processes = 0;
  let threads = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(`--root=${stateDir}`)) continue;
    const rollup = await readFile(`/proc/${entry}/smaps_rollup`, "utf8").catch(() => "");
    bytes += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
    const status = await readFile(`/proc/${entry}/status`, "utf8").catch(() => "");
    threads += Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    processes++;
  }
  return { bytes, processes, threads };
}

interface SandboxListItem {
  id: string;
  status: string;
  reason: string | null;
}

interface Step {
  sandboxes: number;
  createP50Ms: number;
  createP95Ms: number;
  createFailures: number;
  running: number;
  hibernated: number;
  execLiveP50Ms: number;
  execHibernatedP50Ms: number | null;
  apiGetP99Ms: number;
  apiGetP50Ms: number;
  hostCpu: number;
  runscPssPerLiveMB: number;
  hostMemoryPerSandboxMB: number;
  runscThreads: number;
  loadAverage: number;
  /** Each phase of the batch's creates as the server timed them (Server-Timing): what grows with N. */
  createPhases: Record<string, Summary>;
}

execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
const server = await startTestServer({
  ...ROOMY,
  ...(HIBERNATE_AFTER_MS ? { SANDPIT_HIBERNATE_AFTER_MS: HIBERNATE_AFTER_MS } : {}),
  // Empty: the server's default (the test server's own default turns the limit off).
  SANDPIT_LIVE_IDLE_MAX: LIVE_IDLE_MAX ?? "",
  // A /16 of its own: a test server's default /21 holds 512 sandboxes.
  SANDPIT_SANDBOX_SUBNET: process.env.BENCH_SUBNET ?? "10.150.0.0",
  SANDPIT_LOG_LEVEL: "warn",
});
const stateDir = path.join(server.dataDir, "runsc");
const steps: Step[] = [];
let destroyMs = 0;
const ids: string[] = [];
try {
  await new Promise((r) => setTimeout(r, 3000));
  const memoryBefore = await hostMemoryUsed();
  let created = 0;
  for (const target of STEPS) {
    log(`creating ${target - created} (to ${target})`);
    const batch = Array.from({ length: target - created }, (_, i) => created + i);
    const phases: Record<string, number>[] = [];
    const times = await pool(batch, CONCURRENCY, async () => {
      const res = await call<{ id: string }>(server, "POST", "/sandboxes", {
        resources: { memoryMb: 256 },
        timeoutMs: 24 * 3600 * 1000,
      });
      if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
      ids.push(res.body.id);
      phases.push(parseServerTiming(res.headers.get("server-timing")));
    });
    created = target;
    const failures = times.filter((t): t is Error => t instanceof Error);
    for (const f of failures.slice(0, 3)) log(`create failed: ${f.message.slice(0, 300)}`);
    const ok = times.filter((t): t is number => typeof t === "number");

    // At rest: the batch's last sandboxes have been quiet long enough for the live-idle limit to act.
    log(`resting ${SETTLE_MS / 1000} s, then measuring at ${ids.length}`);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const { body: list } = await call<{ sandboxes: SandboxListItem[] }>(server, "GET", "/sandboxes?limit=1000");
    const hibernated = list.sandboxes.filter((s) => s.status === "paused" && s.reason === "hibernated");
    const running = list.sandboxes.filter((s) => s.status === "running");
    // Host CPU and memory first, before the execs below wake anything up.
    const [cpu, pss, memoryUsed] = [await hostCpu(CPU_WINDOW_MS), await runscPss(stateDir), await hostMemoryUsed()];
    const live = ids.at(-1)!;
    await call(server, "POST", `/sandboxes/${live}/exec`, { command: "true" });
    const liveExecs = await pool(Array.from({ length: 20 }), 1, () =>
      call(server, "POST", `/sandboxes/${live}/exec`, { args: ["/bin/true"] }),
    );
    const wakeExecs = await pool(hibernated.slice(0, 10), 1, async (s) => {
      const res = await call<{ exitCode: number }>(server, "POST", `/sandboxes/${s.id}/exec`, { args: ["/bin/true"] });
      if (res.status !== 200)
        throw new Error(`exec of a hibernated sandbox: ${res.status} ${JSON.stringify(res.body)}`);
    });
    const gets = await pool(
      Array.from({ length: 400 }, (_, i) => ids[(i * 7919) % ids.length]!),
      16,
      (id) => call(server, "GET", `/sandboxes/${id}`),
    );
    const nums = (xs: (number | Error)[]) => xs.filter((x): x is number => typeof x === "number");
    const step: Step = {
      sandboxes: ids.length,
      createP50Ms: percentile(ok, 50),
      createP95Ms: percentile(ok, 95),
      createFailures: failures.length,
      running: running.length,
      hibernated: hibernated.length,
      execLiveP50Ms: percentile(nums(liveExecs), 50),
      execHibernatedP50Ms: hibernated.length ? percentile(nums(wakeExecs), 50) : null,
      apiGetP99Ms: percentile(nums(gets), 99),
      apiGetP50Ms: percentile(nums(gets), 50),
      hostCpu: cpu,
      runscPssPerLiveMB: running.length ? pss.bytes / running.length / 1024 / 1024 : 0,
      hostMemoryPerSandboxMB: (memoryUsed - memoryBefore) / ids.length / 1024 / 1024,
      runscThreads: pss.threads,
      loadAverage: os.loadavg()[0]!,
      createPhases: summarizePhases(phases),
    };
    log(JSON.stringify(step));
    steps.push(step);
  }
  log(`destroying ${ids.length}`);
  destroyMs = await timeIt(() => pool(ids, 8, (id) => call(server, "DELETE", `/sandboxes/${id}`)));
} finally {
  await server.close();
}

const f = (n: number | null, digits = 1) => (n === null || Number.isNaN(n) ? "—" : n.toFixed(digits));
console.log(
  "| sandboxes | running / hibernated | create p50 / p95 (failures) | exec live p50 | exec hibernated p50 | GET p50 / p99 | host CPU | runsc PSS per live | host mem per sandbox | runsc threads | load |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const s of steps) {
  console.log(
    `| ${s.sandboxes} | ${s.running} / ${s.hibernated} | ${f(s.createP50Ms, 0)} / ${f(s.createP95Ms, 0)} ms (${s.createFailures}) | ${f(s.execLiveP50Ms)} ms | ${f(s.execHibernatedP50Ms, 0)} ms | ${f(s.apiGetP50Ms)} / ${f(s.apiGetP99Ms)} ms | ${f(s.hostCpu * 100, 0)} % | ${f(s.runscPssPerLiveMB)} MB | ${f(s.hostMemoryPerSandboxMB)} MB | ${s.runscThreads} | ${f(s.loadAverage)} |`,
  );
}
console.log("\ncreate phases, p50 ms (Server-Timing):");
for (const s of steps) console.log(`  at ${s.sandboxes}: ${describePhases(s.createPhases)}`);
console.log(`\ndestroy all ${ids.length}: ${(destroyMs / 1000).toFixed(1)} s`);
const dir = path.join(repoRoot, "bench", "results");
await mkdir(dir, { recursive: true });
const file = path.join(dir, `density-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
const machine = { cpus: os.cpus().length, memoryBytes: os.totalmem(), kernel: os.release() };
const settings = {
  n: N,
  concurrency: CONCURRENCY,
  hibernateAfterMs: HIBERNATE_AFTER_MS ?? "server default",
  liveIdleMax: LIVE_IDLE_MAX ?? "server default",
  memoryMb: 256,
};
await writeFile(
  file,
  `${JSON.stringify({ date: new Date().toISOString(), machine, settings, steps, destroyMs }, null, 2)}\n`,
);
console.log(`written to ${path.relative(repoRoot, file)}`);
