// Per-sandbox metrics sampled from the host (cgroup, disk, veth) and the server's Prometheus endpoint,
// against real gVisor sandboxes; the SDK and the built CLI read the same samples.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type MetricsSample, Sandbox, type SandboxMetrics } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, waitFor } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const INTERVAL_MS = 1000;
const MiB = 1024 * 1024;
const ADMIN_KEY = `adm_${randomBytes(16).toString("hex")}`;
const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandboxId: string;

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_METRICS_INTERVAL_MS: String(INTERVAL_MS), SANDPIT_ADMIN_KEY: ADMIN_KEY });
  api = apiClient(server);
  const sandbox = await api.createSandbox({
    template: "python3.13",
    resources: { vcpus: 1, memoryMb: 1024, diskMb: 1024 },
  });
  sandboxId = sandbox.id;
});

afterAll(async () => {
  await server?.close();
});

async function metrics(id: string, since?: string): Promise<SandboxMetrics> {
  const res = await api.get<SandboxMetrics>(
    `/v1/sandboxes/${id}/metrics${since ? `?since=${encodeURIComponent(since)}` : ""}`,
  );
  expect(res.status).toBe(200);
  return res.body;
}

/** The first sample taken after `since` that satisfies `test`. */
function sampleWhere(id: string, since: string, test: (s: MetricsSample) => boolean, what: string, timeoutMs = 30_000) {
  return waitFor(async () => (await metrics(id, since)).samples.find(test), timeoutMs, what);
}

/** The newest sample taken after `since` (waits for one). */
function nextSample(id: string, since: string) {
  return sampleWhere(id, since, () => true, "a new sample", 10 * INTERVAL_MS);
}

const now = () => new Date().toISOString();

describe("GET /v1/sandboxes/{id}/metrics", () => {
  it("samples a running sandbox at the configured interval with its limits", async () => {
    const first = await nextSample(sandboxId, now());
    const body = await metrics(sandboxId);
    expect(body).toMatchObject({ sandboxId, intervalMs: INTERVAL_MS });
    expect(first.memoryLimitBytes).toBe(1024 * MiB);
    // The disk is an ext4 image of diskMb: its usable size is a little less.
    expect(first.diskLimitBytes).toBeGreaterThan(0.9 * 1024 * MiB);
    expect(first.diskLimitBytes).toBeLessThanOrEqual(1024 * MiB);
    expect(first.memoryBytes).toBeGreaterThan(0);
    expect(first.memoryBytes).toBeLessThan(first.memoryLimitBytes);
    // The agent at least.
    expect(first.processes).toBeGreaterThanOrEqual(1);
    // Samples keep coming, about one per interval, oldest first.
    await nextSample(sandboxId, first.at);
    await nextSample(sandboxId, (await metrics(sandboxId)).samples.at(-1)!.at);
    const { samples } = await metrics(sandboxId);
    const times = samples.map((s) => Date.parse(s.at));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(INTERVAL_MS * 0.5);
    // ?since= filters.
    const since = samples.at(-2)!.at;
    expect((await metrics(sandboxId, since)).samples.every((s) => Date.parse(s.at) > Date.parse(since))).toBe(true);
  });

  it("CPU rises while a process burns it, and falls back when it is killed", async () => {
    const before = now();
    await nextSample(sandboxId, before);
    const idle = Math.min(...(await metrics(sandboxId)).samples.slice(-3).map((s) => s.cpuPercent));
    expect(idle).toBeLessThan(10);
    const burner = await api.post<{ commandId: string }>(`/v1/sandboxes/${sandboxId}/exec`, {
      command: "sh -c 'while :; do :; done'",
      background: true,
    });
    expect(burner.status).toBe(200);
    const started = now();
    const busy = await sampleWhere(sandboxId, started, (s) => s.cpuPercent > 20, "cpuPercent above 20");
    expect(busy.processes).toBeGreaterThanOrEqual(2);
    await api.post(`/v1/sandboxes/${sandboxId}/commands/${burner.body.commandId}/kill`, { signal: "SIGKILL" });
    const killed = now();
    await sampleWhere(sandboxId, killed, (s) => s.cpuPercent < 10, "cpuPercent back below 10");
  });

  it("memory rises when a process allocates 200 MB", async () => {
    const baseline = (await nextSample(sandboxId, now())).memoryBytes;
    const hog = await api.post<{ commandId: string }>(`/v1/sandboxes/${sandboxId}/exec`, {
      // Every page written, so that the memory is really in use.
      args: [
        "python3",
        "-c",
        "import time\nb = b'x' * (200 * 1024 * 1024)\nprint('allocated', flush=True)\ntime.sleep(600)",
      ],
      background: true,
    });
    expect(hog.status).toBe(200);
    const grown = await sampleWhere(
      sandboxId,
      now(),
      (s) => s.memoryBytes >= baseline + 150 * MiB,
      "memoryBytes 150 MB above the baseline",
    );
    expect(grown.memoryBytes).toBeLessThan(grown.memoryLimitBytes);
    await api.post(`/v1/sandboxes/${sandboxId}/commands/${hog.body.commandId}/kill`, { signal: "SIGKILL" });
  });

  it("disk bytes rise when a 50 MB file is written", async () => {
    const baseline = (await nextSample(sandboxId, now())).diskBytes;
    await api.exec(sandboxId, { command: "head -c 52428800 /dev/urandom > /workspace/blob && sync" });
    await sampleWhere(
      sandboxId,
      now(),
      (s) => s.diskBytes >= baseline + 50 * MiB,
      "diskBytes 50 MB above the baseline",
    );
    // Files in /tmp are memory in gVisor (its own tmpfs), not disk: removing the blob gives the space back.
    await api.exec(sandboxId, { command: "rm /workspace/blob && sync" });
    await sampleWhere(sandboxId, now(), (s) => s.diskBytes < baseline + 10 * MiB, "diskBytes back near the baseline");
  });

  describe("network bytes", () => {
    // A web server in a network namespace this test creates, routed from the host (198.18.0.0/15 is a
    // benchmarking range: nothing leaves the machine).
    const ns = "spmetrics87";
    const hostIf = "spmh87";
    const nsIf = "spmn87";
    const gateway = "198.18.87.1";
    const web = "198.18.87.2";
    let webServer: ChildProcess | undefined;
    const sh = (...args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: "pipe" });
    const removeNetwork = () => {
      for (const cmd of [
        ["ip", "netns", "delete", ns],
        ["ip", "link", "delete", hostIf],
      ]) {
        try {
          sh(...cmd);
        } catch {}
      }
    };

    beforeAll(async () => {
      removeNetwork();
      sh("ip", "netns", "add", ns);
      sh("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns);
      sh("ip", "addr", "add", `${gateway}/24`, "dev", hostIf);
      sh("ip", "link", "set", hostIf, "up");
      sh("ip", "-n", ns, "addr", "add", `${web}/24`, "dev", nsIf);
      sh("ip", "-n", ns, "link", "set", nsIf, "up");
      sh("ip", "-n", ns, "route", "add", "default", "via", gateway);
      // GET /blob answers 20 MiB; any other request is read to its end and answered with its size.
      const script = `
        const http = require("node:http");
        const blob = Buffer.alloc(20 * 1024 * 1024, 7);
        http.createServer((req, res) => {
          if (req.url === "/blob") return res.end(blob);
          let size = 0;
          req.on("data", (c) => (size += c.length));
          req.on("end", () => res.end(String(size)));
        }).listen(80, "${web}", () => console.log("ready"));`;
      webServer = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      await new Promise<void>((resolve, reject) => {
        webServer!.stdout!.on("data", (c: Buffer) => c.toString().includes("ready") && resolve());
        webServer!.on("exit", (code) => reject(new Error(`web server exited with ${code}`)));
      });
    });

    afterAll(async () => {
      if (webServer && webServer.exitCode === null) {
        const exited = new Promise((r) => webServer!.once("exit", r));
        webServer.kill("SIGTERM");
        await exited;
      }
      removeNetwork();
    });

    it("received bytes rise after a 20 MiB download, sent bytes after a 10 MiB upload", async () => {
      const before = await nextSample(sandboxId, now());
      const download = await api.exec(sandboxId, {
        command: `curl -sf -m 30 -o /dev/null -w '%{size_download}' http://${web}/blob`,
      });
      expect(download.stdout).toBe(String(20 * MiB));
      const received = await sampleWhere(
        sandboxId,
        now(),
        (s) => s.networkRxBytes >= before.networkRxBytes + 20 * MiB,
        "networkRxBytes 20 MiB higher",
      );
      const upload = await api.exec(sandboxId, {
        command: `head -c 10485760 /dev/zero > /workspace/up && curl -sf -m 30 --data-binary @/workspace/up http://${web}/up; rm /workspace/up`,
      });
      expect(upload.stdout).toBe(String(10 * MiB));
      await sampleWhere(
        sandboxId,
        now(),
        (s) => s.networkTxBytes >= received.networkTxBytes + 10 * MiB,
        "networkTxBytes 10 MiB higher",
      );
    });
  });

  it("the SDK and the CLI read the latest sample", async () => {
    const sandbox = await Sandbox.get(sandboxId, { apiUrl: server.url, apiKey: server.apiKey });
    const viaSdk = await sandbox.metrics();
    expect(viaSdk.sandboxId).toBe(sandboxId);
    expect(viaSdk.samples.length).toBeGreaterThan(0);
    const since = viaSdk.samples.at(-1)!.at;
    expect((await sandbox.metrics({ since: new Date(Date.parse(since)) })).samples.every((s) => s.at > since)).toBe(
      true,
    );

    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [cliEntry, ...args], {
          env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
        child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      });
    const text = await run(["metrics", sandboxId]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^cpu:\s+\d+\.\d% of 1 vCPU$/m);
    expect(text.stdout).toMatch(/^memory:\s+[\d.]+ \w+ \/ 1\.0 GiB$/m);
    expect(text.stdout).toMatch(/^disk:\s+[\d.]+ \w+ \/ [\d.]+ \w+$/m);
    expect(text.stdout).toMatch(/^network:\s+rx [\d.]+ \w+, tx [\d.]+ \w+$/m);
    expect(text.stdout).toMatch(/^processes:\s+\d+$/m);
    const json = await run(["metrics", sandboxId, "--json"]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ memoryLimitBytes: 1024 * MiB });
  });

  it("stops sampling a paused sandbox and keeps its history; a destroyed one has none", async () => {
    const sandbox = await api.createSandbox({ resources: { vcpus: 1, memoryMb: 512 } });
    await nextSample(sandbox.id, now());
    expect((await api.post(`/v1/sandboxes/${sandbox.id}/pause`)).status).toBe(200);
    const paused = now();
    const kept = (await metrics(sandbox.id)).samples.length;
    expect(kept).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
    expect((await metrics(sandbox.id, paused)).samples).toEqual([]);
    expect((await metrics(sandbox.id)).samples.length).toBe(kept);
    expect((await api.post(`/v1/sandboxes/${sandbox.id}/resume`)).status).toBe(200);
    await nextSample(sandbox.id, now());
    expect((await api.del(`/v1/sandboxes/${sandbox.id}`)).status).toBe(204);
    await waitFor(async () => ((await metrics(sandbox.id)).samples.length === 0 ? true : undefined), 10_000);
  });

  it("is described in the OpenAPI document", async () => {
    const doc = await api.get<{ paths: Record<string, Record<string, unknown>> }>("/v1/openapi.json");
    const op = JSON.stringify(doc.body.paths["/v1/sandboxes/{id}/metrics"]?.get);
    for (const field of ["since", "intervalMs", "cpuPercent", "memoryLimitBytes", "networkRxBytes", "processes"]) {
      expect(op).toContain(field);
    }
    expect(doc.body.paths["/metrics"]?.get).toBeDefined();
  });

  it("answers 404 for another organisation's sandbox and names a bad since", async () => {
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "metrics-intruder" });
    const intruder = apiClient(server, other.key);
    const res = await intruder.get<ErrorBody>(`/v1/sandboxes/${sandboxId}/metrics`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("sandbox_not_found");
    expect((await api.get<ErrorBody>(`/v1/sandboxes/sbx_${"a".repeat(20)}/metrics`)).status).toBe(404);
    const bad = await api.get<ErrorBody>(`/v1/sandboxes/${sandboxId}/metrics?since=yesterday`);
    expect(bad.status).toBe(400);
    expect(bad.body.error.details?.fields?.[0]).toMatchObject({ field: "since" });
  });
});

describe("GET /metrics (Prometheus)", () => {
  const scrape = (key: string | null) =>
    fetch(`${server.url}/metrics`, key ? { headers: { authorization: `Bearer ${key}` } } : {});

  /** The value of one series (name with its labels as printed), or undefined. */
  const series = (text: string, name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  };

  it("refuses without the admin key, also with an organisation's key", async () => {
    expect((await scrape(null)).status).toBe(401);
    expect((await scrape(server.apiKey)).status).toBe(401);
  });

  it("reports sandboxes by state, create and exec latency histograms and errors by code", async () => {
    await api.exec(sandboxId, { command: "true" });
    const res = await scrape(ADMIN_KEY);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(series(text, 'sandpit_sandboxes{state="running"}')).toBeGreaterThanOrEqual(1);
    expect(series(text, 'sandpit_sandboxes{state="paused"}')).toBe(0);
    // Every create of this file was a cold start (no warm pools here).
    expect(series(text, 'sandpit_sandbox_create_duration_seconds_count{source="cold"}')).toBeGreaterThanOrEqual(2);
    expect(
      series(text, 'sandpit_sandbox_create_duration_seconds_bucket{le="+Inf",source="cold"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(series(text, 'sandpit_sandbox_create_duration_seconds_bucket{le="0.01",source="cold"}')).toBe(0);
    expect(series(text, "sandpit_exec_duration_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(series(text, 'sandpit_exec_duration_seconds_bucket{le="300"}')).toBeGreaterThanOrEqual(1);
    expect(series(text, 'sandpit_api_errors_total{code="sandbox_not_found",api="sandpit"}')).toBeGreaterThanOrEqual(2);
    expect(series(text, 'sandpit_api_errors_total{code="unauthorized",api="sandpit"}')).toBeGreaterThanOrEqual(2);
    expect(series(text, 'sandpit_api_errors_total{code="validation_failed",api="sandpit"}')).toBeGreaterThanOrEqual(1);
    expect(text).toContain("# TYPE sandpit_warm_pool_ready gauge");
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
  });

  it("counts warm pool sizes and checkouts", async () => {
    const pool = await fetch(`${server.url}/v1/admin/warm-pools/metrics-pool`, {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ template: "base", size: 1, resources: { vcpus: 1, memoryMb: 512, diskMb: 1024 } }),
    });
    expect(pool.status).toBe(200);
    const text = await waitFor(
      async () => {
        const t = await (await scrape(ADMIN_KEY)).text();
        return series(t, 'sandpit_warm_pool_ready{pool="metrics-pool"}') === 1 ? t : undefined;
      },
      120_000,
      "the warm pool to fill",
    );
    expect(series(text, 'sandpit_warm_pool_size{pool="metrics-pool"}')).toBe(1);
    const taken = await api.createSandbox({ template: "base", resources: { vcpus: 1, memoryMb: 512, diskMb: 1024 } });
    const after = await (await scrape(ADMIN_KEY)).text();
    expect(series(after, 'sandpit_sandbox_create_duration_seconds_count{source="warm_pool"}')).toBe(1);
    await api.del(`/v1/sandboxes/${taken.id}`);
    await fetch(`${server.url}/v1/admin/warm-pools/metrics-pool`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
  });
});

describe("GET /metrics with SANDPIT_METRICS_PUBLIC=true and without an admin key", () => {
  let open: TestServer;
  beforeAll(async () => {
    open = await startTestServer({ SANDPIT_METRICS_PUBLIC: "true" });
  });
  afterAll(async () => {
    await open?.close();
  });

  it("serves the metrics without a key", async () => {
    const res = await fetch(`${open.url}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('sandpit_sandboxes{state="running"} 0');
  });
});
