// Placement across the nodes of a cluster: a create lands on a node that has room (spread, node and label
// selection), capacity is reserved atomically in PostgreSQL so concurrent creates through every node never
// overcommit one, and when no node has room the answer is 503 no_capacity with Retry-After.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";
import { queryDatabase } from "../helpers/postgres.js";

/** Every node holds at most this many sandboxes. */
const PER_NODE = 3;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster(0, { SANDPIT_NODE_CAPACITY: `sandboxes=${PER_NODE}` });
  await cluster.addNode({ SANDPIT_NODE_LABELS: "zone=a" });
  await cluster.addNode({ SANDPIT_NODE_LABELS: "zone=b" });
  await cluster.addNode({ SANDPIT_NODE_LABELS: "zone=b,gpu=yes" });
}, 180_000);

afterAll(async () => {
  await cluster?.close();
}, 180_000);

const query = <T>(sql: string, values: unknown[] = []) => queryDatabase<T>(cluster.databaseUrl, sql, values);

function node(id: string): TestNode {
  const found = cluster.nodes.find((n) => n.nodeId === id);
  if (!found) throw new Error(`no node ${id}`);
  return found;
}

/** Destroys sandboxes through the node each lives on. */
async function destroy(sandboxes: Pick<SandboxBody, "id" | "node">[]) {
  for (const s of sandboxes) expect((await apiClient(node(s.node)).del(`/v1/sandboxes/${s.id}`)).status).toBe(204);
}

const live = () =>
  query<{ node_id: string; n: string }>(
    `SELECT node_id, count(*) AS n FROM sandboxes
     WHERE status IN ('creating', 'running', 'pausing', 'paused', 'resuming') GROUP BY node_id ORDER BY node_id`,
  );

describe("placement", () => {
  it("spreads creates that arrive at one node over the three", async () => {
    const api = apiClient(cluster.nodes[0]!);
    const created: SandboxBody[] = [];
    for (let i = 0; i < 3; i++) created.push(await api.createSandbox({}));
    // Each lands on the least allocated node: the receiving one first, then the two empty ones.
    expect(created.map((s) => s.node)).toEqual(["node-1", "node-2", "node-3"]);
    const rows = await query<{ id: string; node_id: string }>("SELECT id, node_id FROM sandboxes WHERE id = ANY($1)", [
      created.map((s) => s.id),
    ]);
    expect(new Map(rows.map((r) => [r.id, r.node_id]))).toEqual(new Map(created.map((s) => [s.id, s.node])));
    await destroy(created);
  });

  it("puts a sandbox on the node or the labels asked for, and refuses what no node matches", async () => {
    const api = apiClient(cluster.nodes[0]!);
    const onNode = await api.createSandbox({ placement: { node: "node-3" } });
    const zoneB = await api.createSandbox({ placement: { labels: { zone: "b" } } });
    const gpu = await api.createSandbox({ placement: { labels: { zone: "b", gpu: "yes" } } });
    expect(onNode.node).toBe("node-3");
    expect(["node-2", "node-3"]).toContain(zoneB.node);
    expect(gpu.node).toBe("node-3");

    const nowhere = await api.post<ErrorBody>("/v1/sandboxes", { placement: { labels: { zone: "c" } } });
    expect(nowhere.status).toBe(503);
    expect(nowhere.headers.get("retry-after")).toBe("5");
    expect(nowhere.body.error).toMatchObject({ code: "no_capacity" });
    expect(nowhere.body.error.message).toMatch(/^no node with labels zone=c has room/);

    const unknown = await api.post<ErrorBody>("/v1/sandboxes", { placement: { node: "node-9" } });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details?.fields).toEqual([
      { field: "placement.node", rule: "unknown_node", message: "no node node-9 in this cluster" },
    ]);
    const bad = await api.post<ErrorBody>("/v1/sandboxes", { placement: { node: "Node 1", labels: { "": "x" } } });
    expect(bad.status).toBe(400);
    const fields = bad.body.error.details?.fields?.map((f) => f.field.split(".").slice(0, 2).join("."));
    expect(fields).toEqual(["placement.node", "placement.labels"]);
    await destroy([onNode, zoneB, gpu]);
  });

  it("answers a native create placed on another node with that node's sandbox, which works there", async () => {
    const res = await apiClient(node("node-2")).post<SandboxBody>("/v1/sandboxes", {
      placement: { node: "node-1" },
      env: { PLACED: "yes" },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ node: "node-1", status: "running", envKeys: expect.arrayContaining(["PLACED"]) });
    expect(res.headers.get("location")).toBe(`/v1/sandboxes/${res.body.id}`);
    const out = await apiClient(node("node-1")).exec(res.body.id, { command: "cat /etc/hostname; echo $PLACED" });
    expect(out.stdout).toBe(`${res.body.id}\nyes\n`);
    expect((await query("SELECT id FROM sandboxes WHERE id = $1 AND node_id = 'node-1'", [res.body.id])).length).toBe(
      1,
    );
    // The offer the create went under is gone once it was answered.
    expect(await query("SELECT key FROM idempotency_keys WHERE key LIKE 'sandpit-placement:%'")).toEqual([]);
    await destroy([res.body]);
  });

  it("never puts more on a node than it holds when 30 creates arrive at all three nodes at once", async () => {
    expect(await live()).toEqual([]);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        apiClient(cluster.nodes[i % 3]!).post<SandboxBody & ErrorBody>("/v1/sandboxes", {
          metadata: { batch: "race", n: String(i) },
        }),
      ),
    );
    const created = results.filter((r) => r.status === 201).map((r) => r.body);
    const refused = results.filter((r) => r.status !== 201);
    // Every node filled up, none went over; every other create was told to come back later.
    expect(created).toHaveLength(3 * PER_NODE);
    for (const r of refused) {
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).toBe("5");
      expect(r.body.error.code).toBe("no_capacity");
    }
    expect(await live()).toEqual(cluster.nodes.map((n) => ({ node_id: n.nodeId, n: String(PER_NODE) })));
    // Nothing was created twice: one row per answered create, and none for the refused ones.
    const rows = await query<{ id: string; n: string }>(
      "SELECT id, metadata_json ->> 'n' AS n FROM sandboxes WHERE metadata_json ->> 'batch' = 'race'",
    );
    expect(rows.map((r) => r.id).sort()).toEqual(created.map((s) => s.id).sort());
    expect(new Set(rows.map((r) => r.n)).size).toBe(rows.length);
    await destroy(created);
  });

  it("tries the next node when the chosen one does not answer, and creates the sandbox once", async () => {
    // A node that stopped answering while its lease still runs: registered, empty, with the most room.
    await query(
      `INSERT INTO nodes (id, url, state, epoch, lease_expires_at, capacity_json, labels_json, version, started_at,
         heartbeat_at)
       VALUES ('node-silent', 'http://127.0.0.1:9', 'ready', 1,
         (extract(epoch from clock_timestamp()) * 1000)::bigint + 600000,
         '{"vcpus": 64, "memoryMb": 262144, "diskMb": 1000000, "sandboxes": 1000}', '{}', 'test', 0, 0)`,
    );
    try {
      const created = await apiClient(cluster.nodes[0]!).createSandbox({ metadata: { batch: "silent" } });
      expect(cluster.nodes.map((n) => n.nodeId)).toContain(created.node);
      const rows = await query<{ id: string; node_id: string }>(
        "SELECT id, node_id FROM sandboxes WHERE metadata_json ->> 'batch' = 'silent'",
      );
      expect(rows).toEqual([{ id: created.id, node_id: created.node }]);
      expect(await query("SELECT key FROM idempotency_keys WHERE key LIKE 'sandpit-placement:%'")).toEqual([]);
      await destroy([created]);
    } finally {
      await query("DELETE FROM nodes WHERE id = 'node-silent'");
    }
  });
});
