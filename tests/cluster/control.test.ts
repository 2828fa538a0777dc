// The cluster's control plane with three real nodes on one PostgreSQL: the nodes API and CLI, the
// cluster-wide jobs on one node, a killed node's sandboxes written off once (events and webhooks once),
// and a node stopped past its lease fenced: its late writes refused, its written-off sandboxes removed,
// then back as a ready node.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import type { ClusterNode } from "@sandpit/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiResponse, apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { containersOf, startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";
import { repoRoot } from "../helpers/paths.js";
import { queryDatabase } from "../helpers/postgres.js";
import { scrapeSample } from "../helpers/prometheus.js";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

const ADMIN_KEY = `sp_admin_${randomBytes(16).toString("hex")}`;
let cluster: TestCluster;
let receiver: WebhookReceiver;

beforeAll(async () => {
  receiver = await startWebhookReceiver([200]);
  cluster = await startCluster(3, {
    SANDPIT_ADMIN_KEY: ADMIN_KEY,
    SANDPIT_OUTBOUND_ALLOWED_HOSTS: "127.0.0.1",
    SANDPIT_WEBHOOK_RETRY_BASE_MS: "300",
  });
}, 180_000);

afterAll(async () => {
  await cluster?.close();
  await receiver?.close();
}, 120_000);

const admin = (node: TestNode) => apiClient(node, ADMIN_KEY);

async function nodesSeenBy(node: TestNode): Promise<ClusterNode[]> {
  const res = await admin(node).get<{ nodes: ClusterNode[] }>("/v1/nodes");
  expect(res.status).toBe(200);
  return res.body.nodes;
}

const metric = (node: TestNode, name: string, labels: Record<string, string> = {}) =>
  scrapeSample(node, ADMIN_KEY, name, labels);

const query = <T>(sql: string, values: unknown[] = []) => queryDatabase<T>(cluster.databaseUrl, sql, values);

/**
 * The sandbox as a node answers it. Bounded: a read forwarded to a node that is stopped (SIGSTOP, its lease
 * not yet run out) is accepted by its kernel and never answered; that counts as no answer yet.
 */
const statusVia = async (node: TestNode, id: string): Promise<Partial<SandboxBody>> => {
  const res = await fetch(`${node.url}/v1/sandboxes/${id}`, {
    headers: { authorization: `Bearer ${node.apiKey}` },
    signal: AbortSignal.timeout(2000),
  }).catch(() => undefined);
  return res ? ((await res.json()) as Partial<SandboxBody>) : {};
};

/** The built CLI, run as an operator with the admin key. */
function sandpitCli(node: TestNode, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, "packages/cli/dist/main.js"), ...args], {
      env: { ...process.env, SANDPIT_URL: node.url, SANDPIT_API_KEY: ADMIN_KEY },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout }));
  });
}

describe("the nodes API", () => {
  it("shows every node's state, capacity, load and version to the admin key, and drains and undrains", async () => {
    const [a, b, c] = cluster.nodes as [TestNode, TestNode, TestNode];
    const s = await apiClient(a).createSandbox({
      placement: { node: a.nodeId },
      resources: { vcpus: 2, memoryMb: 512 },
    });
    try {
      const nodes = await nodesSeenBy(b);
      expect(nodes.map((n) => [n.id, n.url, n.state])).toEqual(cluster.nodes.map((n) => [n.nodeId, n.url, "ready"]));
      const [onA] = nodes;
      expect(onA!.load).toEqual({ sandboxes: { running: 1 }, vcpus: 2, memoryMb: 512 });
      expect(onA!.capacity.vcpus).toBeGreaterThan(0);
      expect(onA!.capacity.sandboxes).toBeGreaterThan(0);
      expect(onA!.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(Date.parse(onA!.leaseExpiresAt)).toBeGreaterThan(Date.parse(onA!.heartbeatAt));
      // Metrics on any node show every node, labelled by node.
      expect(await metric(c, "sandpit_node_allocated", { node: a.nodeId, resource: "vcpus" })).toBe(2);
      expect(await metric(c, "sandpit_node_capacity", { node: a.nodeId, resource: "vcpus" })).toBe(onA!.capacity.vcpus);

      // Only the admin key: a client's key is not enough.
      const refused = await apiClient(b).get<ErrorBody>("/v1/nodes");
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe("unauthorized");

      const drained = await admin(a).post<ClusterNode>(`/v1/nodes/${c.nodeId}/drain`);
      expect(drained.status).toBe(200);
      expect(drained.body).toMatchObject({ id: c.nodeId, state: "draining" });
      expect(await metric(b, "sandpit_node_state", { node: c.nodeId, state: "draining" })).toBe(1);
      expect(await metric(b, "sandpit_node_state", { node: c.nodeId, state: "ready" })).toBe(0);
      // The CLI, as an operator runs it.
      const ls = await sandpitCli(b, ["nodes", "ls"]);
      expect(ls.code).toBe(0);
      const lines = ls.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^ID\s+STATE\s+URL\s+SANDBOXES\s+CPU\s+MEMORY/);
      expect(lines.find((l) => l.startsWith(`${c.nodeId} `))).toMatch(/\sdraining\s/);
      expect(lines.find((l) => l.startsWith(`${a.nodeId} `))).toMatch(/\s1 running \(of \d+\)\s+2\/\d+\s/);
      const undrained = await sandpitCli(a, ["nodes", "undrain", c.nodeId]);
      expect(undrained).toEqual({ code: 0, stdout: `${c.nodeId}  ready\n` });
      expect((await nodesSeenBy(a)).find((n) => n.id === c.nodeId)?.state).toBe("ready");

      const unknown = await admin(a).post<ErrorBody>("/v1/nodes/node-404/drain");
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe("not_found");
    } finally {
      await apiClient(a).del(`/v1/sandboxes/${s.id}`);
    }
  });
});

describe("cluster-wide jobs", () => {
  it("run on exactly one node: the holder of the jobs lease", async () => {
    const runsOf = (job: string) =>
      Promise.all(cluster.nodes.map((n) => metric(n, "sandpit_cluster_job_runs_total", { job })));
    /** Runs of `job` on each node from now until there were `atLeast` in all. */
    const runsFromNow = async (job: string, atLeast: number) => {
      const before = await runsOf(job);
      return waitFor(
        async () => {
          const since = (await runsOf(job)).map((n, i) => n - before[i]!);
          return since.reduce((a, b) => a + b, 0) >= atLeast ? since : undefined;
        },
        30_000,
        `${atLeast} runs of ${job}`,
      );
    };
    const purges = await runsFromNow("purge_destroyed", 3);
    expect(purges.filter((n) => n > 0)).toHaveLength(1);
    const leader = cluster.nodes[purges.findIndex((n) => n > 0)]!;
    const [lease] = await query<{ holder: string }>("SELECT holder FROM cluster_leases WHERE name = 'cluster-jobs'");
    expect(lease?.holder).toBe(leader.nodeId);
    expect(await Promise.all(cluster.nodes.map((n) => metric(n, "sandpit_cluster_leader")))).toEqual(
      cluster.nodes.map((n) => (n === leader ? 1 : 0)),
    );
    // Lost-node detection too.
    const detections = await runsFromNow("lost_nodes", 3);
    expect(detections.map((n) => n > 0)).toEqual(cluster.nodes.map((n) => n === leader));
  });
});

describe("a node that fails", () => {
  it("killed: its running sandboxes turn node_lost once (one event, one webhook each), the others run on; it rejoins", async () => {
    const [a, b, c] = cluster.nodes as [TestNode, TestNode, TestNode];
    const hook = await apiClient(b).post<{ id: string }>("/v1/webhooks", {
      url: receiver.url,
      events: ["sandbox.error"],
    });
    expect(hook.status).toBe(201);
    const onA = await Promise.all([
      apiClient(a).createSandbox({ placement: { node: a.nodeId } }),
      apiClient(a).createSandbox({ placement: { node: a.nodeId } }),
    ]);
    const pausedOnA = await apiClient(a).createSandbox({ placement: { node: a.nodeId } });
    await apiClient(a).exec(pausedOnA.id, { args: ["sh", "-c", "echo kept > /tmp/kept"] });
    expect((await apiClient(a).post(`/v1/sandboxes/${pausedOnA.id}/pause`)).status).toBe(200);
    const others = [
      await apiClient(b).createSandbox({ placement: { node: b.nodeId } }),
      await apiClient(c).createSandbox({ placement: { node: c.nodeId } }),
    ];
    const epochBefore = (await nodesSeenBy(b)).find((n) => n.id === a.nodeId)!.epoch;

    await a.kill9();
    for (const s of onA) {
      const lost = await waitFor(
        async () => {
          // Until the cluster declares its node lost, a read through B is forwarded there and answers 503.
          const now = await statusVia(b, s.id);
          return now.status === undefined || now.status === "running" ? undefined : now;
        },
        30_000,
        `${s.id} written off`,
      );
      expect(lost).toMatchObject({ status: "error", reason: "node_lost", node: a.nodeId });
    }
    expect((await nodesSeenBy(c)).find((n) => n.id === a.nodeId)?.state).toBe("lost");
    // Its paused sandbox keeps its image: it stays paused. The other nodes' sandboxes run on.
    expect(await statusVia(c, pausedOnA.id)).toMatchObject({ status: "paused" });
    for (const [i, node] of [b, c].entries()) {
      expect((await apiClient(node).exec(others[i]!.id, { args: ["true"] })).exitCode).toBe(0);
      expect(await statusVia(node, others[i]!.id)).toMatchObject({ status: "running" });
    }

    // One event each, naming the node, and one webhook delivery each.
    for (const s of onA) {
      const events = await apiClient(c).get<{ events: { type: string; data: Record<string, unknown> }[] }>(
        `/v1/events?sandboxId=${s.id}&type=sandbox.error`,
      );
      expect(events.body.events.map((e) => [e.type, e.data.reason, e.data.node])).toEqual([
        ["sandbox.error", "node_lost", a.nodeId],
      ]);
    }
    const delivered = await waitFor(
      async () => {
        const got = receiver.received.map((r) => (JSON.parse(r.body) as { sandboxId: string }).sandboxId);
        return onA.every((s) => got.includes(s.id)) ? got : undefined;
      },
      30_000,
      "the webhook deliveries",
    );
    expect(delivered.sort()).toEqual(onA.map((s) => s.id).sort());
    const attempts = await apiClient(b).get<{ deliveries: { eventId: number }[] }>(
      `/v1/webhooks/${hook.body.id}/deliveries`,
    );
    expect(attempts.body.deliveries).toHaveLength(onA.length);

    // Back: ready, a new epoch; what the cluster wrote off stays written off and leaves the host.
    await a.restart();
    const back = (await nodesSeenBy(b)).find((n) => n.id === a.nodeId)!;
    expect(back).toMatchObject({ state: "ready", url: a.url });
    expect(back.epoch).toBeGreaterThan(epochBefore);
    for (const s of onA) expect(await statusVia(a, s.id)).toMatchObject({ status: "error", reason: "node_lost" });
    expect(containersOf(a).filter((id) => onA.some((s) => s.id === id))).toEqual([]);
    // Its paused sandbox is its own still: it resumes with its files.
    expect((await apiClient(a).post(`/v1/sandboxes/${pausedOnA.id}/resume`)).status).toBe(200);
    expect((await apiClient(a).exec(pausedOnA.id, { args: ["cat", "/tmp/kept"] })).stdout).toBe("kept\n");

    await apiClient(b).del(`/v1/webhooks/${hook.body.id}`);
    for (const s of [...onA, pausedOnA]) await apiClient(a).del(`/v1/sandboxes/${s.id}`);
    await apiClient(b).del(`/v1/sandboxes/${others[0]!.id}`);
    await apiClient(c).del(`/v1/sandboxes/${others[1]!.id}`);
  });

  it("stopped past its lease: fenced — its late write is refused, it removes what was written off and rejoins", async () => {
    const [, b, c] = cluster.nodes as [TestNode, TestNode, TestNode];
    const s = await apiClient(b).createSandbox({ placement: { node: b.nodeId }, metadata: { k: "before" } });
    const epochBefore = (await nodesSeenBy(c)).find((n) => n.id === b.nodeId)!.epoch;

    process.kill(b.pid, "SIGSTOP");
    let late: Promise<ApiResponse<ErrorBody>> | undefined;
    try {
      const lost = await waitFor(
        async () => {
          const now = await statusVia(c, s.id);
          return now.status === undefined || now.status === "running" ? undefined : now;
        },
        30_000,
        "the stopped node's sandbox written off",
      );
      expect(lost).toMatchObject({ status: "error", reason: "node_lost" });
      // Sent while it is stopped: the node handles it the moment it runs again, before it learns it was lost.
      late = apiClient(b).call<ErrorBody>("PATCH", `/v1/sandboxes/${s.id}`, { metadata: { k: "late" } });
    } finally {
      process.kill(b.pid, "SIGCONT");
    }
    const refused = (await late)!;
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe("node_fenced");
    expect(refused.headers.get("retry-after")).toBe("2");
    expect(await statusVia(c, s.id)).toMatchObject({ status: "error", reason: "node_lost", metadata: { k: "before" } });

    // It removes the sandbox the cluster wrote off and registers again, with a new epoch.
    const back = await waitFor(
      async () => {
        const node = (await nodesSeenBy(c)).find((n) => n.id === b.nodeId);
        return node?.state === "ready" && node.epoch > epochBefore ? node : undefined;
      },
      30_000,
      "the fenced node back",
    );
    expect(back.url).toBe(b.url);
    expect(containersOf(b)).not.toContain(s.id);
    // And serves again.
    const fresh = await apiClient(b).createSandbox({ placement: { node: b.nodeId } });
    expect((await apiClient(b).exec(fresh.id, { args: ["echo", "again"] })).stdout).toBe("again\n");
    await apiClient(b).del(`/v1/sandboxes/${fresh.id}`);
    await apiClient(b).del(`/v1/sandboxes/${s.id}`);
  });
});
