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
    // Both paths verify against a trust store of the same size: the system bundle plus one CA (the
    // upstream's for the direct path; Sandpit's egress CA is already in the sandbox's bundle). curl
    // spends several ms loading a bundle, so a one-certificate --cacert would flatter the direct path.
    await api.exec(sandbox.id, {
      command: "cat /etc/ssl/certs/ca-certificates.crt /tmp/upstream-ca.crt > /tmp/upstream-bundle.crt",
    });
    // curl's own clock, inside the sandbox, one new connection each, by phase (DNS, TCP connect, TLS
    // handshake, request and response), so a difference shows where it is. The two paths alternate
    // (direct, brokered, brokered, direct, ...) so that both see the same load of a shared machine.
    const paths = {
      direct: "--cacert /tmp/upstream-bundle.crt https://plain.upstream.test/",
      brokered: "https://api.upstream.test/",
    };
    const timings = async (n: number) => {
      const curl = (tag: string, args: string) =>
        `curl -s -o /dev/null -w '${tag} %{time_namelookup} %{time_connect} %{time_appconnect} %{time_total}\\n' ${args}`;
      const pair = `${curl("direct", paths.direct)}; ${curl("brokered", paths.brokered)}`;
      const swapped = `${curl("brokered", paths.brokered)}; ${curl("direct", paths.direct)}`;
      const r = await api.exec(sandbox.id, {
        command: `for i in $(seq ${n}); do if [ $((i % 2)) = 1 ]; then ${pair}; else ${swapped}; fi; done`,
        timeoutMs: 600_000,
      });
      const rows = r.stdout
        .trim()
        .split("\n")
        .map((line) => line.split(" "))
        .map(([tag, ...t]) => ({ tag, t: t.map((s) => Number(s) * 1000) as [number, number, number, number] }));
      const summary = (tag: string) => {
        const mine = rows.filter((r) => r.tag === tag).map((r) => r.t);
        return {
          total: summarize(mine.map((t) => t[3])),
          dns: summarize(mine.map((t) => t[0])),
          connect: summarize(mine.map((t) => t[1] - t[0])),
          handshake: summarize(mine.map((t) => t[2] - t[1])),
          request: summarize(mine.map((t) => t[3] - t[2])),
        };
      };
      return { direct: summary("direct"), brokered: summary("brokered") };
    };
    log(`${N} requests each way, alternating (after 5 warm-up requests each)`);
    await timings(5);
    const { direct, brokered } = await timings(N);
    const added = brokered.total.p50 - direct.total.p50;
    const ms = (v: number) => `${v.toFixed(2)} ms`;
    const rows = [
      ["path", "p50", "p95", "DNS p50", "TCP connect p50", "TLS handshake p50", "request p50"],
      ...(
        [
          ["direct HTTPS", direct],
          ["brokered HTTPS (header injected)", brokered],
        ] as const
      ).map(([name, t]) => [
        name,
        ms(t.total.p50),
        ms(t.total.p95),
        ms(t.dns.p50),
        ms(t.connect.p50),
        ms(t.handshake.p50),
        ms(t.request.p50),
      ]),
      [
        "added by the broker",
        ms(added),
        ms(brokered.total.p95 - direct.total.p95),
        ms(brokered.dns.p50 - direct.dns.p50),
        ms(brokered.connect.p50 - direct.connect.p50),
        ms(brokered.handshake.p50 - direct.handshake.p50),
        ms(brokered.request.p50 - direct.request.p50),
      ],
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
