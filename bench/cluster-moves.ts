// Moves between nodes: how long a drained node's running sandbox is away (paused on one node, running on
// the other), idle and holding 500 MB of memory, beside bare runsc checkpoint + restore of the same
// workload (the raw floor); and what shared storage adds to a pause (image written to SANDPIT_SHARED_DIR
// with a copy of the disk) against a pause on a single host.
// Usage: npm run bench:cluster-moves  (prints a table, writes bench/results/cluster-moves-<timestamp>.json)
// BENCH_MOVES_REPS: moves per case (default 3).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { apiClient, type SandboxBody, waitFor } from "../tests/helpers/api.js";
import { startCluster, type TestNode } from "../tests/helpers/cluster.js";
import { repoRoot, testTemplatesDir } from "../tests/helpers/paths.js";
import { queryDatabase } from "../tests/helpers/postgres.js";
import { startTestServer, type TestServer, testLogDir } from "../tests/helpers/server.js";
import { RawRunsc } from "./raw-runsc.js";
import { type Summary, summarize, timeIt } from "./stats.js";

const REPS = Number(process.env.BENCH_MOVES_REPS ?? 3);

/** A process holding 500 MB of random bytes (zero pages would be left out of a checkpoint). */
const HOLD_500MB =
  'import os,time\nb=os.urandom(500*1024*1024)\nopen("/tmp/ready","w").close()\nwhile True: time.sleep(60)';

type Workload = "idle" | "500 MB";

function log(line: string) {
  process.stderr.write(`[bench] ${line}\n`);
}

async function templateRootfs(): Promise<string> {
  const meta = JSON.parse(await readFile(path.join(testTemplatesDir, "base", "template.json"), "utf8")) as {
    layers: string[];
  };
  return meta.layers[0]!;
}

/** A running sandbox on `server` with the workload in place. */
async function sandboxWith(server: Pick<TestServer, "url" | "apiKey">, workload: Workload): Promise<string> {
  const api = apiClient(server);
  const sandbox = await api.createSandbox({ timeoutMs: 900_000, resources: { memoryMb: 1024 } });
  if (workload === "500 MB") {
    await api.put(`/v1/sandboxes/${sandbox.id}/files?path=/workspace/hold.py`, HOLD_500MB);
    await api.post(`/v1/sandboxes/${sandbox.id}/exec`, { command: "python3 /workspace/hold.py", background: true });
    await waitFor(
      async () =>
        (await api.exec(sandbox.id, { command: "test -e /tmp/ready && echo y || true" })).stdout ? true : undefined,
      120_000,
      "the 500 MB to be held",
    );
  }
  return sandbox.id;
}

/** The server's own account of a move: its "sandbox moved away" log line on the node it left. */
async function movedAwayLine(node: TestNode, id: string): Promise<{ ms: number; pauseMs: number } | undefined> {
  const text = await readFile(path.join(testLogDir, `${node.netPrefix}.log`), "utf8").catch(() => "");
  for (const line of text.split("\n").reverse()) {
    if (!line.includes(id) || !line.includes("sandbox moved away")) continue;
    const entry = JSON.parse(line) as { ms: number; pauseMs: number };
    return { ms: entry.ms, pauseMs: entry.pauseMs };
  }
  return undefined;
}

interface MoveSamples {
  /** Pause started → running on the other node (server's log). */
  move: number[];
  /** Of which the pause: checkpoint, image and disk copy on shared storage. */
  pause: number[];
  /** Drain set in the database → the client sees it running on the other node (includes noticing it). */
  drainToRunning: number[];
}

/** Moves one sandbox back and forth by draining whichever node holds it. */
async function measureMoves(nodes: TestNode[], databaseUrl: string, workload: Workload): Promise<MoveSamples> {
  const samples: MoveSamples = { move: [], pause: [], drainToRunning: [] };
  let holder = nodes[0]!;
  const id = await sandboxWith(holder, workload);
  for (let i = 0; i < REPS; i++) {
    const start = performance.now();
    await queryDatabase(databaseUrl, "UPDATE nodes SET state = 'draining' WHERE id = $1", [holder.nodeId]);
    const moved = await waitFor(
      async () => {
        const r = await apiClient(holder).get<SandboxBody>(`/v1/sandboxes/${id}`);
        return r.body.status === "running" && r.body.node !== holder.nodeId ? r.body : undefined;
      },
      180_000,
      "the move",
    );
    samples.drainToRunning.push(performance.now() - start);
    await queryDatabase(databaseUrl, "UPDATE nodes SET state = 'ready' WHERE id = $1", [holder.nodeId]);
    const line = await waitFor(() => movedAwayLine(holder, id), 10_000, "the move's log line");
    samples.move.push(line.ms);
    samples.pause.push(line.pauseMs);
    log(
      `${workload}: move ${i + 1}/${REPS} ${holder.nodeId} → ${moved.node}: ${line.ms} ms (pause ${line.pauseMs} ms)`,
    );
    holder = nodes.find((n) => n.nodeId === moved.node)!;
  }
  await apiClient(holder).del(`/v1/sandboxes/${id}`);
  return samples;
}

/** Pause and resume through the API of one server, REPS times. */
async function measurePauses(server: Pick<TestServer, "url" | "apiKey">, workload: Workload) {
  const api = apiClient(server);
  const id = await sandboxWith(server, workload);
  const pauses: number[] = [];
  for (let i = 0; i < REPS; i++) {
    pauses.push(await timeIt(() => api.post(`/v1/sandboxes/${id}/pause`)));
    await api.post(`/v1/sandboxes/${id}/resume`);
  }
  await api.del(`/v1/sandboxes/${id}`);
  return summarize(pauses);
}

/** Bare runsc: checkpoint, then restore of the same workload (the container removed in between, untimed). */
async function measureRaw(raw: RawRunsc, workload: Workload) {
  const id = `benchmove${workload === "idle" ? "idle" : "big0"}${String(Date.now()).slice(-7)}`;
  await raw.start(id, workload === "idle" ? undefined : ["/usr/bin/python3", "-c", HOLD_500MB]);
  if (workload !== "idle") {
    await waitFor(
      async () => ((await raw.exec(id, "/bin/sh", "-c", "test -e /tmp/ready && echo y || true")) ? true : undefined),
      120_000,
      "raw 500 MB",
    );
  }
  const total: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const checkpoint = await timeIt(() => raw.checkpoint(id));
    await raw.removeCheckpointed(id);
    total.push(checkpoint + (await timeIt(() => raw.restore(id))));
  }
  await raw.destroy(id);
  return summarize(total);
}

async function main() {
  const workloads: Workload[] = ["idle", "500 MB"];
  const results: Record<string, unknown> = { at: new Date().toISOString(), reps: REPS };
  const moves: Record<string, Record<keyof MoveSamples, Summary>> = {};
  const raws: Record<string, Summary> = {};
  const pauses: Record<string, { single: Summary; shared: Summary }> = {};

  const cluster = await startCluster(2);
  try {
    for (const w of workloads) {
      const s = await measureMoves(cluster.nodes, cluster.databaseUrl, w);
      moves[w] = { move: summarize(s.move), pause: summarize(s.pause), drainToRunning: summarize(s.drainToRunning) };
      pauses[w] = { shared: await measurePauses(cluster.nodes[0]!, w), single: summarize([]) };
    }
  } finally {
    await cluster.close();
  }
  const single = await startTestServer();
  try {
    for (const w of workloads) pauses[w]!.single = await measurePauses(single, w);
  } finally {
    await single.close();
  }
  const raw = await RawRunsc.create(await templateRootfs());
  try {
    for (const w of workloads) raws[w] = await measureRaw(raw, w);
  } finally {
    await raw.close();
  }

  const ms = (n: number) => `${n.toFixed(0)} ms`;
  console.log(
    `${"workload".padEnd(8)} ${"move p50".padStart(9)} ${"(pause)".padStart(9)} ${"drain→running".padStart(14)} ${"raw ckpt+restore".padStart(17)} ${"pause 1 host".padStart(13)} ${"pause shared".padStart(13)}`,
  );
  for (const w of workloads) {
    console.log(
      `${w.padEnd(8)} ${ms(moves[w]!.move.p50).padStart(9)} ${ms(moves[w]!.pause.p50).padStart(9)} ${ms(moves[w]!.drainToRunning.p50).padStart(14)} ${ms(raws[w]!.p50).padStart(17)} ${ms(pauses[w]!.single.p50).padStart(13)} ${ms(pauses[w]!.shared.p50).padStart(13)}`,
    );
  }
  Object.assign(results, { moves, raw: raws, pauses });
  const dir = path.join(repoRoot, "bench/results");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `cluster-moves-${String(results.at).replace(/[:.]/g, "-")}.json`);
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`wrote ${path.relative(repoRoot, file)}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
