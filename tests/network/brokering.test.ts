// Credential brokering through the egress broker, and the egress audit log, against a fake internet with
// HTTPS servers under a test CA the server is told to trust for upstreams.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { type FakeInternet, startFakeInternet } from "../helpers/fake-internet.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { makeUpstreamCerts } from "../helpers/upstream-certs.js";

const N = 43;
const SECRET = "sk-live-SECRET-4f9d2c7e";
const hosts = { brokered: `198.18.${N}.6`, plain: `198.18.${N}.7`, forged: `198.18.${N}.8` };

let dir: string;
let net: FakeInternet;
let server: TestServer;
let api: ReturnType<typeof apiClient>;
let testCa: string;

/** How many requests an upstream has seen (asked from the host, which trusts the test CA). */
function seen(host: string, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(
        {
          host,
          port: 443,
          path: "/__requests",
          servername: name,
          ca: testCa,
          rejectUnauthorized: name !== "forged.upstream.test",
        },
        (res) => {
          let body = "";
          res.on("data", (c: Buffer) => {
            body += c.toString();
          });
          res.on("end", () => resolve((JSON.parse(body) as { seen: number }).seen));
        },
      )
      .on("error", reject);
  });
}

beforeAll(async () => {
  dir = mkdtempSync("/var/tmp/sandpit-broker-test-");
  const certs = makeUpstreamCerts(dir);
  testCa = readFileSync(path.join(dir, "ca.crt"), "utf8");
  net = await startFakeInternet(N, {
    https: [
      { host: hosts.brokered, port: 443, ...certs.brokered },
      { host: hosts.plain, port: 443, ...certs.plain },
      { host: hosts.forged, port: 443, ...certs.forged },
    ],
    records: {
      "api.upstream.test": hosts.brokered,
      "plain.upstream.test": hosts.plain,
      "forged.upstream.test": hosts.forged,
    },
  });
  server = await startTestServer({
    SANDPIT_DNS_UPSTREAM: net.ip.dns,
    SANDPIT_UPSTREAM_CA_FILE: path.join(dir, "ca.crt"),
  });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await net?.close();
  rmSync(dir, { recursive: true, force: true });
});

const transforms = [
  { domain: "api.upstream.test", injectHeaders: { Authorization: `Bearer ${SECRET}` }, stripHeaders: ["x-remove-me"] },
  { domain: "forged.upstream.test", injectHeaders: { Authorization: `Bearer ${SECRET}` } },
];

describe("credential brokering", () => {
  let sandbox: SandboxBody;

  it("injects and strips headers on the way out, and the sandbox never holds the secret", async () => {
    sandbox = await api.createSandbox({ networkPolicy: { mode: "allow-all", transforms }, timeoutMs: 600_000 });
    // The API never shows the value.
    expect(JSON.stringify(sandbox)).not.toContain(SECRET);
    expect(
      (sandbox.networkPolicy as { transforms: { injectHeaders: Record<string, string> }[] }).transforms[0]
        ?.injectHeaders,
    ).toEqual({
      Authorization: "[redacted]",
    });

    const r = await api.exec(sandbox.id, {
      command: "curl -sS --fail https://api.upstream.test/v1/echo -H 'x-remove-me: gone' -H 'x-keep: kept'",
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const received = JSON.parse(r.stdout) as { headers: Record<string, string>; path: string };
    expect(received.path).toBe("/v1/echo");
    expect(received.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(received.headers["x-keep"]).toBe("kept");
    expect(received.headers["x-remove-me"]).toBeUndefined();
    // Python (REQUESTS_CA_BUNDLE/SSL_CERT_FILE) and Node (NODE_EXTRA_CA_CERTS) trust the broker too.
    const py = await api.exec(sandbox.id, {
      command:
        "python3 -c \"import json,urllib.request; print(json.load(urllib.request.urlopen('https://api.upstream.test/py'))['headers']['authorization'][:6])\"",
    });
    expect(py.stdout.trim(), py.stderr).toBe("Bearer");
    const node = await api.exec(sandbox.id, {
      command: "node -e \"fetch('https://api.upstream.test/node').then(r=>r.json()).then(j=>console.log(j.path))\"",
    });
    expect(node.stdout.trim(), node.stderr).toBe("/node");

    // Nowhere inside: not in the environment, not in any file.
    const env = await api.exec(sandbox.id, { command: `env | grep -c '${SECRET}' || true` });
    expect(env.stdout.trim()).toBe("0");
    const files = await api.exec(sandbox.id, {
      command: `grep -rl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev '${SECRET}' / 2>/dev/null | wc -l`,
      timeoutMs: 120_000,
    });
    expect(files.stdout.trim()).toBe("0");
  });

  it("sends a request again on a new connection when the upstream dropped the kept-alive one", async () => {
    // The first request leaves a kept-alive connection in the broker's pool; the upstream drops the next
    // request that arrives on it without an answer, as when it closed the connection while it lay idle.
    const r = await api.exec(sandbox.id, {
      command:
        "curl -sS --fail https://api.upstream.test/first >/dev/null && curl -sS --fail https://api.upstream.test/drop-when-reused",
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const received = JSON.parse(r.stdout) as { headers: Record<string, string>; path: string };
    expect(received.path).toBe("/drop-when-reused");
    expect(received.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it("forwards request bodies as sent: sized, chunked and empty", async () => {
    const echo = async (command: string) => {
      const r = await api.exec(sandbox.id, { command });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { method: string; headers: Record<string, string>; body: string };
    };
    const sized = await echo("curl -sS --fail --data-binary 'hello, upstream' https://api.upstream.test/sized");
    expect(sized.method).toBe("POST");
    expect(sized.body).toBe("hello, upstream");
    expect(sized.headers["content-length"]).toBe("15");
    expect(sized.headers.authorization).toBe(`Bearer ${SECRET}`);
    const chunked = await echo(
      "printf 'streamed body' | curl -sS --fail -H 'Transfer-Encoding: chunked' --data-binary @- https://api.upstream.test/chunked",
    );
    expect(chunked.body).toBe("streamed body");
    expect(chunked.headers["transfer-encoding"]).toBe("chunked");
    const empty = await echo("curl -sS --fail -X PUT https://api.upstream.test/empty");
    expect(empty.method).toBe("PUT");
    expect(empty.body).toBe("");
  });

  it("keeps the secret out of a snapshot's memory and disk", async () => {
    const snap = await api.post<{ id: string }>(`/v1/sandboxes/${sandbox.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    const snapshotDir = path.join(server.dataDir, "snapshots", snap.body.id);
    const hits = execFileSync("sh", ["-c", `grep -rla '${SECRET}' ${snapshotDir} | wc -l`])
      .toString()
      .trim();
    expect(hits).toBe("0");
    await api.del(`/v1/snapshots/${snap.body.id}`);
  });

  it("passes an unmatched domain through untouched, with the upstream's own certificate", async () => {
    // The sandbox talks to the upstream itself: it needs the upstream's CA, not Sandpit's.
    await api.put(`/v1/sandboxes/${sandbox.id}/files?path=/tmp/upstream-ca.crt`, testCa);
    const verbose = await api.exec(sandbox.id, {
      command:
        "curl -sv --cacert /tmp/upstream-ca.crt -o /dev/null https://plain.upstream.test/x 2>&1 | grep -m1 'issuer:'",
    });
    expect(verbose.stdout).toContain("Test Upstream CA");
    const r = await api.exec(sandbox.id, {
      command: "curl -sS --cacert /tmp/upstream-ca.crt https://plain.upstream.test/x -H 'x-remove-me: stays'",
    });
    const received = JSON.parse(r.stdout) as { headers: Record<string, string> };
    expect(received.headers["x-remove-me"]).toBe("stays");
    expect(received.headers.authorization).toBeUndefined();
  });

  it("fails closed when the upstream's certificate is not trusted", async () => {
    const before = await seen(hosts.forged, "forged.upstream.test");
    const r = await api.exec(sandbox.id, {
      command: "curl -sS -o /dev/null -w '%{http_code}' https://forged.upstream.test/steal",
    });
    expect(r.stdout).toBe("502");
    expect(await seen(hosts.forged, "forged.upstream.test")).toBe(before);
  });

  it("records allowed and denied attempts with the rule that decided", async () => {
    const custom = await api.createSandbox({
      networkPolicy: {
        mode: "custom",
        allow: { cidrs: [`${net.ip.web}/32`] },
        deny: { cidrs: [`${net.ip.denied}/32`] },
      },
    });
    await api.exec(custom.id, {
      command: `curl -s -o /dev/null http://${net.ip.web}/ok; curl -s -m 3 http://${net.ip.denied}/no; curl -s -m 3 http://${net.ip.allowed}/no; curl -s -m 3 http://169.254.169.254/; true`,
    });
    type Entry = {
      sandboxId: string;
      ip: string | null;
      port: number | null;
      decision: string;
      rule: string;
      domain: string | null;
      bytesIn: number | null;
      protocol: string;
    };
    let last: Entry[] = [];
    const entries = await waitFor(
      async () => {
        const res = await api.get<{ entries: Entry[] }>(`/v1/sandboxes/${custom.id}/egress-log`);
        const list = res.body.entries;
        last = list;
        // Byte counts arrive when the connection table is next read (every few seconds).
        const done = list.some((e) => e.ip === net.ip.web && e.decision === "allowed" && (e.bytesIn ?? 0) > 0);
        return done && list.some((e) => e.rule === "always-blocked") ? list : undefined;
      },
      20_000,
      "audit entries",
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}: ${JSON.stringify(last)}`);
    });
    expect(entries.find((e) => e.ip === net.ip.web)).toMatchObject({
      decision: "allowed",
      rule: "allow.cidr",
      port: 80,
      protocol: "tcp",
    });
    expect(entries.find((e) => e.ip === net.ip.web)?.bytesIn).toBeGreaterThan(0);
    expect(entries.find((e) => e.ip === net.ip.denied)).toMatchObject({
      decision: "denied",
      rule: "deny.cidr",
      port: 80,
    });
    expect(entries.find((e) => e.ip === net.ip.allowed)).toMatchObject({
      decision: "denied",
      rule: "policy.default-deny",
    });
    expect(entries.find((e) => e.ip === "169.254.169.254")).toMatchObject({
      decision: "denied",
      rule: "always-blocked",
    });

    // The brokered sandbox's log has the brokered request with its domain, and the refused upstream.
    const brokered = await api.get<{ entries: Entry[] }>(`/v1/egress-log?sandboxId=${sandbox.id}`);
    expect(brokered.body.entries).toContainEqual(
      expect.objectContaining({
        domain: "api.upstream.test",
        decision: "allowed",
        rule: "transform",
        protocol: "https",
      }),
    );
    expect(brokered.body.entries).toContainEqual(
      expect.objectContaining({ domain: "forged.upstream.test", decision: "denied", rule: "broker.upstream-failed" }),
    );
    expect(brokered.body.entries).toContainEqual(
      expect.objectContaining({ domain: "plain.upstream.test", decision: "allowed", rule: "mode.allow-all" }),
    );
    const deniedOnly = await api.get<{ entries: Entry[] }>(`/v1/egress-log?decision=denied&sandboxId=${custom.id}`);
    expect(deniedOnly.body.entries.every((e) => e.decision === "denied")).toBe(true);
    await api.del(`/v1/sandboxes/${custom.id}`);
    await api.del(`/v1/sandboxes/${sandbox.id}`);
  });
});
