// Where an exec round trip's time goes: `/bin/true` straight to the sandbox's agent, through the server's
// HTTP API and through the SDK, in rotating order, beside the in-sandbox spawn floor measured hot (a
// tight loop) and after the sandbox idled a few milliseconds (as it does between two API calls), and a
// child forked ahead that only has to execve (the pre-forked exec helper the issue proposed, measured).
// Usage: npm run bench:exec-layers   (prints a table, writes bench/results/exec-layers-<time>.json)
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { Sandbox } from "sandpit";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { measurePreforkedSpawn, measureSpawnFloors } from "./floor.js";
import { type Summary, summarize, timeIt } from "./stats.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PER_ROUND = Number(process.env.BENCH_EXECS ?? 30);
const dist = (p: string) => path.join(repoRoot, "packages/server/dist", p);

async function main() {
  execFileSync("npm", ["run", "build"], { cwd: repoRoot, stdio: "ignore" });
  // The server's own agent client and addressing, to reach the agent the way the server does.
  const { AgentClient } = (await import(
    dist("agent/agent-client.js")
  )) as typeof import("../packages/server/src/agent/agent-client.js");
  const { addressingFor } = (await import(
    dist("network/addressing.js")
  )) as typeof import("../packages/server/src/network/addressing.js");
  const { AGENT_PORT } = (await import(
    dist("runtime/gvisor-runtime.js")
  )) as typeof import("../packages/server/src/runtime/gvisor-runtime.js");
  const server = await startTestServer();
  try {
    const sandbox = await Sandbox.create({}, { apiUrl: server.url, apiKey: server.apiKey });
    const db = new Database(path.join(server.dataDir, "sandpit.db"), { readonly: true });
    const row = db.prepare("SELECT net_index, agent_token FROM sandboxes WHERE id = ?").get(sandbox.id) as {
      net_index: number;
      agent_token: string;
    };
    db.close();
    const agent = new AgentClient({
      host: addressingFor(server.subnet, server.netPrefix, row.net_index).sandboxIp,
      port: AGENT_PORT,
      token: row.agent_token,
    });
    // What the server sends for `{"args": ["/bin/true"]}`: its default environment and working directory.
    const env = {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      TERM: "xterm-256color",
      HOSTNAME: sandbox.id,
    };
    let n = 0;
    const ops: Record<string, () => Promise<unknown>> = {
      "agent health (HTTP round trip over the veth)": () => agent.health(),
      "agent exec (no server)": async () => {
        for await (const _ of agent.exec({
          id: `cmd_layers${String(n++).padStart(12, "0")}`,
          args: ["/bin/true"],
          env,
          cwd: "/root",
          maxOutputBytes: 1 << 20,
        }));
      },
      "server API exec (fetch, JSON)": async () => {
        const res = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/exec`, {
          method: "POST",
          headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
          body: JSON.stringify({ args: ["/bin/true"] }),
        });
        await res.arrayBuffer();
      },
      "SDK commands.run": () => sandbox.commands.run(["/bin/true"]),
    };
    const names = Object.keys(ops);
    const samples: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
    const hot: number[] = [];
    const idle: number[] = [];
    const preforked: number[] = [];
    const wake: number[] = [];
    for (const op of Object.values(ops)) await op();
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < PER_ROUND; i++) {
        for (let j = 0; j < names.length; j++) {
          const name = names[(i + j) % names.length]!;
          samples[name]!.push(await timeIt(ops[name]!));
        }
      }
      await measureSpawnFloors(sandbox, hot, idle);
      await measurePreforkedSpawn(sandbox, preforked, wake);
    }
    agent.close();
    await sandbox.kill();

    const results: Record<string, Summary> = {};
    for (const name of names) results[name] = summarize(samples[name]!);
    results["in-sandbox spawn, hot loop"] = summarize(hot);
    results["in-sandbox spawn after 5 ms idle"] = summarize(idle);
    results["pre-forked child: execve 5 ms after the fork"] = summarize(preforked);
    results["pre-forked child: its wake-up alone (no execve)"] = summarize(wake);
    const floor = results["in-sandbox spawn, hot loop"]!.p50;
    console.log("| layer | p50 | p95 | p50 / hot floor |\n|---|---|---|---|");
    for (const [name, s] of Object.entries(results)) {
      console.log(`| ${name} | ${s.p50.toFixed(2)} ms | ${s.p95.toFixed(2)} ms | ${(s.p50 / floor).toFixed(2)}× |`);
    }
    const dir = path.join(repoRoot, "bench/results");
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, `exec-layers-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nwritten to ${path.relative(repoRoot, file)}`);
  } finally {
    await server.close();
  }
}

await main();
