// Added latency of the credential-brokering path: HTTPS requests from inside a sandbox to a fake
// upstream, through the egress broker (a transform domain) and directly (an untouched domain on the
// same kind of server), in the same run. Usage: npm run bench:egress
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { apiClient } from "../tests/helpers/api.js";
import { startFakeInternet } from "../tests/helpers/fake-internet.js";
import { repoRoot } from "../tests/helpers/paths.js";
import { startTestServer } from "../tests/helpers/server.js";
import { makeUpstreamCerts } from "../tests/helpers/upstream-certs.js";
import { summarize } from "./stats.js";

const N = Number(process.env.BENCH_EGRESS_REQUESTS ?? 100);
const NET = 44;

function log(line: string) {
  process.stderr.write(`[bench:egress] ${line}\n`);
}

async function main() {
  const dir = await mkdtemp("/var/tmp/sandpit-bench-egress-");
  const certs = makeUpstreamCerts(dir);
  const hosts = { brokered: `198.18.${NET}.6`, plain: `198.18.${NET}.7` };
  const net = await startFakeInternet(NET, {
    https: [
      { host: hosts.brokered, port: 443, ...certs.brokered },
      { host: hosts.plain, port: 443, ...certs.plain },
    ],
    records: { "api.upstream.test": hosts.brokered, "plain.upstream.test": hosts.plain },
  });
  const server = await startTestServer({
    SANDPIT_DNS_UPSTREAM: net.ip.dns,
    SANDPIT_UPSTREAM_CA_FILE: path.join(dir, "ca.crt"),
  });
  const api = apiClient(server);
  try {
    const sandbox = await api.createSandbox({
      networkPolicy: {
        mode: "allow-all",
        transforms: [{ domain: "api.upstream.test", injectHeaders: { Authorization: "Bearer bench" } }],
      },
      timeoutMs: 3_600_000,
    });
    await api.put(
      `/v1/sandboxes/${sandbox.id}/files?path=/tmp/upstream-ca.crt`,
      await readFile(path.join(dir, "ca.crt")),
    );
    // curl's own clock, inside the sandbox: connect + TLS + request + response, one new connection each.
    const timings = async (url: string, extra: string, n = N) => {
      const r = await api.exec(sandbox.id, {
        command: `for i in $(seq ${n}); do curl -s -o /dev/null ${extra} -w '%{time_total}\\n' ${url}; done`,
        timeoutMs: 600_000,
      });
      return r.stdout
        .trim()
        .split("\n")
        .map((s) => Number(s) * 1000);
    };
    log(`${N} requests each way (after 5 warm-up requests)`);
    await timings("https://api.upstream.test/", "", 5);
    await timings("https://plain.upstream.test/", "--cacert /tmp/upstream-ca.crt", 5);
    const direct = summarize(await timings("https://plain.upstream.test/", "--cacert /tmp/upstream-ca.crt"));
    const brokered = summarize(await timings("https://api.upstream.test/", ""));
    const added = brokered.p50 - direct.p50;
    const rows = [
      ["path", "p50", "p95"],
      ["direct HTTPS", `${direct.p50.toFixed(2)} ms`, `${direct.p95.toFixed(2)} ms`],
      ["brokered HTTPS (header injected)", `${brokered.p50.toFixed(2)} ms`, `${brokered.p95.toFixed(2)} ms`],
      ["added by the broker", `${added.toFixed(2)} ms`, `${(brokered.p95 - direct.p95).toFixed(2)} ms`],
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
    process.stdout.write(`goal: added p50 ≤ 2 ms → ${added <= 2 ? "met" : "not met"}\n`);
    const out = path.join(repoRoot, "bench/results");
    await mkdir(out, { recursive: true });
    const file = path.join(out, `egress-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
    await writeFile(file, JSON.stringify({ requests: N, direct, brokered, addedP50Ms: added }, null, 2));
    log(`wrote ${file}`);
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  } finally {
    await server.close();
    await net.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
