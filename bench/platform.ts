// gVisor's platforms side by side: systrap (the default) and ptrace, each through Sandpit (a server with
// SANDPIT_PLATFORM) and bare runsc on the same template, in the same run.
// Usage: npm run bench:platform  (prints a table, writes bench/results/platform-<time>.json)
import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { type Api, destroySandbox } from "./create.js";
import { baseTemplateRootfs, RawRunsc } from "./raw-runsc.js";
import { ROOMY } from "./server-env.js";
import { percentile, timeIt } from "./stats.js";

const PLATFORMS = ["systrap", "ptrace"] as const;
type Platform = (typeof PLATFORMS)[number];
const N_IDLE = Number(process.env.BENCH_IDLE ?? 20);
const IDLE_WINDOW_MS = 10_000;
const N_EXEC = Number(process.env.BENCH_EXECS ?? 20);

function log(line: string) {
  process.stderr.write(`[bench] ${line}\n`);
}

/** What the probe measures inside one sandbox. */
interface Probe {
  spawnMs: number;
  statUs: number;
  pythonImportMs: number;
  writeMBps: number;
  readMBps: number;
}

/**
 * Runs inside the sandbox and prints a Probe as JSON: spawn of /bin/true (p50 of 30, hot), os.stat (µs per
 * call over 100k: syscall-heavy), `python3 -c "import json,email,http.client"` as a new process (p50 of 5),
 * and 100 MB written (fsync) and read back in 1 MB pieces under /tmp (runsc's tmpfs in both cases: the
 * bare container's root is read-only).
 */
const PROBE = `
import os,time,json
def p50(xs): xs=sorted(xs); return xs[len(xs)//2]
def spawn_ms(argv):
    t=time.perf_counter(); pid=os.posix_spawn(argv[0],argv,os.environ); os.waitpid(pid,0); return (time.perf_counter()-t)*1000
r={}
r['spawnMs']=p50([spawn_ms(['/bin/true']) for _ in range(30)])
t=time.perf_counter()
for _ in range(100000): os.stat('/')
r['statUs']=(time.perf_counter()-t)*1e6/100000
r['pythonImportMs']=p50([spawn_ms(['/usr/bin/python3','-c','import json,email,http.client']) for _ in range(5)])
chunk=os.urandom(1<<20)
t=time.perf_counter()
with open('/tmp/probe.bin','wb') as f:
    for _ in range(100): f.write(chunk)
    f.flush(); os.fsync(f.fileno())
r['writeMBps']=100/(time.perf_counter()-t)
t=time.perf_counter()
with open('/tmp/probe.bin','rb') as f:
    while f.read(1<<20): pass
r['readMBps']=100/(time.perf_counter()-t)
os.unlink('/tmp/probe.bin')
print(json.dumps(r))
`;

/** CPU seconds used so far by the live processes whose argv names `stateDir` (runsc sandbox and gofer). */
async function runscCpuSeconds(stateDir: string): Promise<Map<number, number>> {
  const ticks = new Map<number, number>();
  for (const entry of await readdir("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(`--root=${stateDir}`)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime: fields 14 and 15 of stat, 12th and 13th after the command name.
    if (fields.length > 13) ticks.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return ticks;
}

/** Cores used by those processes over `windowMs` (processes alive at both ends). */
async function idleCores(stateDir: string, windowMs: number): Promise<number> {
  const before = await runscCpuSeconds(stateDir);
  await new Promise((r) => setTimeout(r, windowMs));
  const after = await runscCpuSeconds(stateDir);
  let used = 0;
  for (const [pid, s] of after) used += s - (before.get(pid) ?? s);
  return used / (windowMs / 1000);
}

async function api(a: Api, method: string, route: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${a.url}/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${a.apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return res.json();
}

interface Row {
  idleCoresPerSandbox: number;
  execTrueMs: number;
  probe: Probe;
}

async function sandpitRow(platform: Platform): Promise<Row> {
  const server = await startTestServer({ SANDPIT_PLATFORM: platform, SANDPIT_HIBERNATE_AFTER_MS: "0", ...ROOMY });
  try {
    const create = async () => ((await api(server, "POST", "/sandboxes", {})) as { id: string }).id;
    const id = await create();
    const exec = (args: string[]) =>
      api(server, "POST", `/sandboxes/${id}/exec`, { args }) as Promise<{ stdout: string; exitCode: number }>;
    await exec(["true"]);
    const execs: number[] = [];
    for (let i = 0; i < N_EXEC; i++) execs.push(await timeIt(() => exec(["/bin/true"])));
    const probe = JSON.parse((await exec(["python3", "-c", PROBE])).stdout) as Probe;
    const idle = [id];
    for (let i = 1; i < N_IDLE; i += 5) {
      idle.push(...(await Promise.all(Array.from({ length: Math.min(5, N_IDLE - i) }, create))));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const cores = await idleCores(path.join(server.dataDir, "runsc"), IDLE_WINDOW_MS);
    await Promise.all(idle.map((s) => destroySandbox(server, s)));
    return { idleCoresPerSandbox: cores / N_IDLE, execTrueMs: percentile(execs, 50), probe };
  } finally {
    await server.close();
  }
}

async function rawRow(platform: Platform): Promise<Row> {
  const raw = await RawRunsc.create(await baseTemplateRootfs(), platform);
  try {
    const id = (i: number) => `benchplat${platform.slice(0, 2)}${String(i).padStart(8, "0")}`;
    await raw.start(id(0));
    await raw.exec(id(0), "/bin/true");
    const execs: number[] = [];
    for (let i = 0; i < N_EXEC; i++) execs.push(await timeIt(() => raw.exec(id(0), "/bin/true")));
    const probe = JSON.parse(await raw.exec(id(0), "python3", "-c", PROBE)) as Probe;
    for (let i = 1; i < N_IDLE; i++) await raw.start(id(i));
    await new Promise((r) => setTimeout(r, 3000));
    const cores = await idleCores(raw.stateDir, IDLE_WINDOW_MS);
    return { idleCoresPerSandbox: cores / N_IDLE, execTrueMs: percentile(execs, 50), probe };
  } finally {
    await raw.close();
  }
}

execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
const measured: Record<string, Row> = {};
for (const platform of PLATFORMS) {
  log(`${platform}: sandpit`);
  measured[`sandpit ${platform}`] = await sandpitRow(platform);
  log(`${platform}: bare runsc`);
  measured[`runsc ${platform}`] = await rawRow(platform);
}
const columns: [string, (r: Row) => string][] = [
  [`idle CPU per sandbox (${N_IDLE} idle)`, (r) => `${(r.idleCoresPerSandbox * 100).toFixed(2)} %`],
  ["exec `true` (API / runsc exec) p50", (r) => `${r.execTrueMs.toFixed(1)} ms`],
  ["in-sandbox spawn p50", (r) => `${r.probe.spawnMs.toFixed(1)} ms`],
  ["os.stat", (r) => `${r.probe.statUs.toFixed(1)} µs`],
  ["python3 -c import json,email,http.client", (r) => `${r.probe.pythonImportMs.toFixed(0)} ms`],
  ["write / read 100 MB (/tmp)", (r) => `${r.probe.writeMBps.toFixed(0)} / ${r.probe.readMBps.toFixed(0)} MB/s`],
];
const names = Object.keys(measured);
console.log(`| metric | ${names.join(" | ")} |`);
console.log(`|---|${names.map(() => "---").join("|")}|`);
for (const [title, cell] of columns) console.log(`| ${title} | ${names.map((n) => cell(measured[n]!)).join(" | ")} |`);
const dir = path.join(repoRoot, "bench", "results");
await mkdir(dir, { recursive: true });
const file = path.join(dir, `platform-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
const machine = { cpus: os.cpus().length, memoryBytes: os.totalmem(), kernel: os.release() };
await writeFile(file, `${JSON.stringify({ date: new Date().toISOString(), machine, measured }, null, 2)}\n`);
console.log(`\nwritten to ${path.relative(repoRoot, file)}`);
