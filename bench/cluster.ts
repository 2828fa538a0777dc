// What forwarding between nodes costs: exec and file round trips to a sandbox on node A, sent to A (its
// owner) and to B (which passes them to A), interleaved so that both see the same conditions; three
// nodes on one PostgreSQL. Also the owner look-up every request for a sandbox makes.
// Usage: npm run bench:cluster  (prints a table, writes bench/results/cluster-<timestamp>.json)
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import Fastify from "fastify";
import { NodeClient } from "../packages/server/src/cluster/node-client.js";
import { NodeForwarder } from "../packages/server/src/cluster/node-forwarder.js";
import type { SandboxOwner } from "../packages/server/src/domain/index.js";
import { forSandbox, forwardToOwners } from "../packages/server/src/http/sandbox-forwarding.js";
import { TrafficRouter } from "../packages/server/src/http/traffic-router.js";
import { PgStore } from "../packages/server/src/store/pg-store.js";
import { apiClient } from "../tests/helpers/api.js";
import { startCluster } from "../tests/helpers/cluster.js";
import { repoRoot } from "../tests/helpers/paths.js";
import { type Summary, summarize, timeIt } from "./stats.js";

const N = Number(process.env.BENCH_CLUSTER_ROUNDS ?? 200);
const FILE_BYTES = 64 * 1024;
const BIG_FILE_BYTES = 8 * 1024 * 1024;
const N_BIG = Number(process.env.BENCH_CLUSTER_BIG_ROUNDS ?? 20);
const N_CREATE = Number(process.env.BENCH_CLUSTER_CREATES ?? 6);

function log(line: string) {
  process.stderr.write(`[bench:cluster] ${line}\n`);
}

interface Row {
  metric: string;
  owner: string;
  forwarded: string;
  added: string;
  goal: string;
}

const ms = (n: number) => `${n.toFixed(2)} ms`;
const fmt = (s: Summary) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)}`;

/**
 * The forwarding mechanism alone: two Fastify servers in this process with the real forwarder, a route
 * that answers at once and an owner table in memory (no database, no sandbox, no other processes to
 * wait for), GETs via the owner and via the other one.
 */
async function hopInProcess(rounds: number): Promise<{ owner: Summary; forwarded: Summary }> {
  const owners = new Map<string, SandboxOwner>();
  const servers = await Promise.all(
    ["a", "b"].map(async (nodeId) => {
      const app = Fastify();
      const forwarder = new NodeForwarder(new NodeClient(nodeId, "bench-secret"), async (id) => owners.get(id));
      forwardToOwners(app, forwarder, new TrafficRouter(undefined));
      app.get("/v1/sandboxes/:id", forSandbox("id"), async () => ({ ok: true }));
      await app.listen({ host: "127.0.0.1", port: 0 });
      return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
    }),
  );
  const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
  owners.set("sbx_bench", { nodeId: "a", url: a.url, state: "ready", leaseLive: true });
  const agent = new http.Agent({ keepAlive: true });
  const get = (base: string) =>
    new Promise<void>((resolve, reject) =>
      http
        .get(`${base}/v1/sandboxes/sbx_bench`, { agent }, (res) => {
          res.resume();
          res.on("end", resolve);
        })
        .on("error", reject),
    );
  try {
    for (let i = 0; i < 100; i++) await Promise.all([get(a.url), get(b.url)]);
    const owner: number[] = [];
    const forwarded: number[] = [];
    for (let i = 0; i < rounds; i++) {
      owner.push(await timeIt(() => get(a.url)));
      forwarded.push(await timeIt(() => get(b.url)));
    }
    return { owner: summarize(owner), forwarded: summarize(forwarded) };
  } finally {
    agent.destroy();
    await Promise.all(servers.map((s) => s.app.close()));
  }
}

async function main() {
  log("the hop in one process");
  const hop = await hopInProcess(N * 10);
  const cluster = await startCluster(3);
  const [a, b] = cluster.nodes;
  if (!a || !b) throw new Error("the cluster has fewer than two nodes");
  const viaOwner = apiClient(a);
  const viaOther = apiClient(b);
  const rows: Row[] = [];
  const results: Record<string, unknown> = { rounds: N, bigRounds: N_BIG, hopInProcess: hop };
  rows.push({
    metric: "GET, forwarder alone (one process, no database)",
    owner: fmt(hop.owner),
    forwarded: fmt(hop.forwarded),
    added: `p50 +${ms(hop.forwarded.p50 - hop.owner.p50)}`,
    goal: "",
  });
  try {
    const sandbox = await viaOwner.createSandbox({ placement: { node: a.nodeId } });
    const id = sandbox.id;
    const probe = await viaOther.get(`/v1/sandboxes/${id}`);
    if (probe.headers.get("x-sandpit-node") !== a.nodeId) {
      throw new Error(`the sandbox should be on ${a.nodeId}, answered by ${probe.headers.get("x-sandpit-node")}`);
    }
    const small = randomBytes(FILE_BYTES);
    const big = randomBytes(BIG_FILE_BYTES);

    /** Each operation timed N times through each node, alternating A and B. */
    async function compare(
      metric: string,
      rounds: number,
      op: (api: ReturnType<typeof apiClient>, i: number) => Promise<void>,
      goal = "",
    ) {
      log(metric);
      // Warm both paths (connections, the owner's agent connection) before measuring.
      for (let i = 0; i < 5; i++) {
        await op(viaOwner, i);
        await op(viaOther, i);
      }
      const owner: number[] = [];
      const forwarded: number[] = [];
      for (let i = 0; i < rounds; i++) {
        owner.push(await timeIt(() => op(viaOwner, i)));
        forwarded.push(await timeIt(() => op(viaOther, i)));
      }
      const o = summarize(owner);
      const f = summarize(forwarded);
      results[metric] = { owner: o, forwarded: f, addedP50Ms: f.p50 - o.p50, addedP95Ms: f.p95 - o.p95 };
      rows.push({ metric, owner: fmt(o), forwarded: fmt(f), added: `p50 +${ms(f.p50 - o.p50)}`, goal });
    }

    const expectOk = (status: number, what: string) => {
      if (status >= 300) throw new Error(`${what} answered ${status}`);
    };
    await compare("sandbox GET (no gVisor: the hop alone)", N, async (api) => {
      expectOk((await api.get(`/v1/sandboxes/${id}`)).status, "GET");
    });
    await compare(
      "exec `true` round trip",
      N,
      async (api) => {
        const res = await api.post<{ exitCode: number }>(`/v1/sandboxes/${id}/exec`, { args: ["true"] });
        if (res.status !== 200 || res.body.exitCode !== 0) throw new Error(`exec answered ${res.status}`);
      },
      "≤ 1 ms added p50",
    );
    await compare(
      "file 64 KiB write + read",
      N,
      async (api, i) => {
        const file = `/tmp/bench-${i % 8}`;
        expectOk((await api.put(`/v1/sandboxes/${id}/files?path=${file}`, small)).status, "PUT");
        const read = await api.get<Buffer>(`/v1/sandboxes/${id}/files?path=${file}`);
        if (read.body.length !== FILE_BYTES) throw new Error("short read");
      },
      "≤ 1 ms added p50",
    );
    await compare("file 8 MiB write + read", N_BIG, async (api) => {
      expectOk((await api.put(`/v1/sandboxes/${id}/files?path=/tmp/bench-big`, big)).status, "PUT");
      const read = await api.get<Buffer>(`/v1/sandboxes/${id}/files?path=/tmp/bench-big`);
      if (read.body.length !== BIG_FILE_BYTES) throw new Error("short read");
    });
    // A create through A, made on A as a single node would (pinned), against one placed by the cluster
    // over the three nodes (least allocated first: mostly another node, over the internal API).
    log("create: on the receiving node vs placed over three nodes");
    const pinned: number[] = [];
    const placed: number[] = [];
    const placedOn: Record<string, number> = {};
    for (let i = 0; i < N_CREATE; i++) {
      for (const [samples, body] of [
        [pinned, { placement: { node: a.nodeId } }],
        [placed, {}],
      ] as const) {
        let made: { id: string; node: string } | undefined;
        samples.push(await timeIt(async () => (made = await viaOwner.createSandbox(body))));
        if (samples === placed) placedOn[made!.node] = (placedOn[made!.node] ?? 0) + 1;
        await viaOwner.del(`/v1/sandboxes/${made!.id}`);
      }
    }
    const p1 = summarize(pinned);
    const p3 = summarize(placed);
    results["create"] = { onReceivingNode: p1, placedOverThree: p3, placedOn };
    rows.push({
      metric: `create (→ running), placed over 3 nodes vs on A (${JSON.stringify(placedOn)})`,
      owner: fmt(p1),
      forwarded: fmt(p3),
      added: `p50 +${ms(p3.p50 - p1.p50)}`,
      goal: "",
    });
    // The owner look-up every request for a sandbox makes (on the node it reaches, and again on the owner).
    log("owner look-up");
    const store = await PgStore.open(cluster.databaseUrl, { nodeId: "bench", holdNode: false });
    try {
      for (let i = 0; i < 20; i++) await store.sandboxOwner(id);
      const lookups: number[] = [];
      for (let i = 0; i < N; i++) lookups.push(await timeIt(() => store.sandboxOwner(id)));
      const l = summarize(lookups);
      results["store.sandboxOwner"] = l;
      rows.push({ metric: "store.sandboxOwner (one query)", owner: fmt(l), forwarded: "", added: "", goal: "" });
    } finally {
      await store.close();
    }
    await viaOwner.del(`/v1/sandboxes/${id}`);
  } finally {
    await cluster.close();
  }

  const header: Row = {
    metric: "metric",
    owner: "via owner (A)",
    forwarded: "via B → A",
    added: "added",
    goal: "goal",
  };
  const keys = Object.keys(header) as (keyof Row)[];
  const widths = keys.map((k) => Math.max(...[header, ...rows].map((r) => r[k].length)));
  const line = (r: Row) => `| ${keys.map((k, i) => r[k].padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));

  const dir = path.join(repoRoot, "bench", "results");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `cluster-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem() };
  await writeFile(file, JSON.stringify({ date: new Date().toISOString(), machine, rows, results }, null, 2));
  console.log(`\nwritten to ${path.relative(repoRoot, file)}`);
}

await main();
