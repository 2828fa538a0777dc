// What a node asks of PostgreSQL: the write statements (INSERT/UPDATE/DELETE) and transactions per create,
// exec and destroy, and per second of an idle node (lease renewals and background ticks), counted from
// PostgreSQL's own statement log on a real one-node cluster. Feeds docs/scaling.md.
// Usage: npm run bench:cluster-db  (prints a table, writes bench/results/cluster-db-<timestamp>.json)
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { apiClient } from "../tests/helpers/api.js";
import { startCluster } from "../tests/helpers/cluster.js";
import { repoRoot } from "../tests/helpers/paths.js";

const N = Number(process.env.BENCH_DB_OPS ?? 10);
const IDLE_S = Number(process.env.BENCH_DB_IDLE_S ?? 20);

/** Statements of the background work of an idle node (lease renewals, retention purges). */
const BACKGROUND = new Set([
  "UPDATE nodes",
  "INSERT cluster_leases",
  "DELETE sandboxes",
  "DELETE idempotency_keys",
  "DELETE egress_log",
  "DELETE events",
]);

interface Count {
  writes: number;
  transactions: number;
  byStatement: Record<string, number>;
}

async function main() {
  const cluster = await startCluster(1, { SANDPIT_NODE_LEASE_TTL_MS: "10000" });
  const node = cluster.nodes[0]!;
  const api = apiClient(node);
  const logFile = path.join(cluster.postgres.dir, "log");
  const admin = new pg.Client({ connectionString: cluster.databaseUrl });
  await admin.connect();
  try {
    await admin.query("ALTER SYSTEM SET log_statement = 'mod'");
    await admin.query("SELECT pg_reload_conf()");
    const commits = async () =>
      Number(
        (await admin.query("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")).rows[0]
          .xact_commit,
      );
    /** Counts what PostgreSQL logged and committed while `work` ran (stats settle within a second). */
    const measure = async (work: () => Promise<void>): Promise<Count> => {
      await new Promise((r) => setTimeout(r, 1200));
      const from = (await stat(logFile)).size;
      const c0 = await commits();
      await work();
      await new Promise((r) => setTimeout(r, 1200));
      const text = (await readFile(logFile)).subarray(from).toString();
      // Our own two stats queries are read-only transactions: subtract them.
      const transactions = (await commits()) - c0 - 2;
      const byStatement: Record<string, number> = {};
      let writes = 0;
      for (const m of text.matchAll(/(?:statement|execute [^:]*): (INSERT INTO|UPDATE|DELETE FROM) (\w+)/g)) {
        const key = `${m[1]!.split(" ")[0]} ${m[2]}`;
        byStatement[key] = (byStatement[key] ?? 0) + 1;
        writes++;
      }
      return { writes, transactions, byStatement };
    };
    const per = (c: Count, n: number) => ({
      writes: c.writes / n,
      transactions: c.transactions / n,
      byStatement: Object.fromEntries(Object.entries(c.byStatement).map(([k, v]) => [k, v / n])),
    });

    const idle = await measure(() => new Promise((r) => setTimeout(r, IDLE_S * 1000)));
    const idlePerSecond = per(idle, IDLE_S);
    const ids: string[] = [];
    let elapsed = Date.now();
    const creates = await measure(async () => {
      for (let i = 0; i < N; i++) ids.push((await api.createSandbox({})).id);
    });
    const createSeconds = (Date.now() - elapsed) / 1000;
    elapsed = Date.now();
    const execs = await measure(async () => {
      for (let i = 0; i < N * 2; i++) await api.exec(ids[i % ids.length]!, { args: ["true"] });
    });
    const execSeconds = (Date.now() - elapsed) / 1000;
    elapsed = Date.now();
    const destroys = await measure(async () => {
      for (const id of ids) await api.del(`/v1/sandboxes/${id}`);
    });
    const destroySeconds = (Date.now() - elapsed) / 1000;
    // What the background ticks wrote meanwhile (lease renewals, purges) is not the operation's: its
    // statements are left out, and the idle rate of transactions is taken off.
    const net = (c: Count, seconds: number, n: number) => {
      const own = Object.entries(c.byStatement).filter(([k]) => !BACKGROUND.has(k));
      return {
        writes: own.reduce((sum, [, v]) => sum + v, 0) / n,
        transactions: (c.transactions - idlePerSecond.transactions * seconds) / n,
        byStatement: Object.fromEntries(own.map(([k, v]) => [k, v / n])),
      };
    };
    const results = {
      at: new Date().toISOString(),
      idlePerSecond,
      create: net(creates, createSeconds, N),
      exec: net(execs, execSeconds, N * 2),
      destroy: net(destroys, destroySeconds, N),
    };
    const row = (name: string, r: { writes: number; transactions: number; byStatement: Record<string, number> }) =>
      `${name.padEnd(22)} ${r.writes.toFixed(2).padStart(8)} ${r.transactions.toFixed(2).padStart(8)}   ${Object.entries(
        r.byStatement,
      )
        .map(([k, v]) => `${k} ${v.toFixed(2)}`)
        .join(", ")}`;
    console.log(`${"".padEnd(22)} ${"writes".padStart(8)} ${"xacts".padStart(8)}   statements (per operation)`);
    console.log(row("idle node, per second", results.idlePerSecond));
    console.log(row("create", results.create));
    console.log(row("exec (foreground)", results.exec));
    console.log(row("destroy", results.destroy));
    const dir = path.join(repoRoot, "bench/results");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, `cluster-db-${results.at.replace(/[:.]/g, "-")}.json`);
    await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`wrote ${path.relative(repoRoot, file)}`);
  } finally {
    await admin.end();
    await cluster.close();
  }
}

await main();
