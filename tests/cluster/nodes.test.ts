// Several `sandpit serve` processes on one PostgreSQL are nodes of one cluster: each registers, holds a
// lease, and keeps its own sandboxes (own network slots, own supervision).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient } from "../helpers/api.js";
import { startCluster, type TestCluster } from "../helpers/cluster.js";
import { queryDatabase } from "../helpers/postgres.js";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster(3);
}, 180_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

const query = <T>(sql: string, values: unknown[] = []) => queryDatabase<T>(cluster.databaseUrl, sql, values);

describe("nodes of a cluster", () => {
  it("register with their URL and a lease, and each keeps the sandboxes created on it", async () => {
    const nodes = await query<{ id: string; url: string; state: string; lease_expires_at: string }>(
      "SELECT id, url, state, lease_expires_at FROM nodes ORDER BY id",
    );
    expect(nodes.map((n) => [n.id, n.url, n.state])).toEqual(cluster.nodes.map((n) => [n.nodeId, n.url, "ready"]));

    const created = await Promise.all(cluster.nodes.map((node) => apiClient(node).createSandbox({})));
    expect(created.map((s) => s.node)).toEqual(cluster.nodes.map((n) => n.nodeId));
    const rows = await query<{ id: string; node_id: string; net_index: number }>(
      "SELECT id, node_id, net_index FROM sandboxes WHERE id = ANY($1) ORDER BY node_id",
      [created.map((s) => s.id)],
    );
    // Every node has its own subnet, so all three take their first slot.
    expect(rows.map((r) => [r.node_id, r.net_index])).toEqual(cluster.nodes.map((n) => [n.nodeId, 0]));

    // Each node runs and supervises its own: a command works on each, and none takes another's for dead.
    for (const [i, node] of cluster.nodes.entries()) {
      const out = await apiClient(node).exec(created[i]!.id, { args: ["cat", "/etc/hostname"] });
      expect(out.stdout.trim()).toBe(created[i]!.id);
    }
    await new Promise((r) => setTimeout(r, 2500));
    for (const [i, node] of cluster.nodes.entries()) {
      expect((await apiClient(node).get(`/v1/sandboxes/${created[i]!.id}`)).body).toMatchObject({ status: "running" });
    }
    for (const [i, node] of cluster.nodes.entries()) await apiClient(node).del(`/v1/sandboxes/${created[i]!.id}`);
  });

  it("renew their leases while they run", async () => {
    const before = await query<{ id: string; lease_expires_at: string }>("SELECT id, lease_expires_at FROM nodes");
    await new Promise((r) => setTimeout(r, 2000));
    const after = await query<{ id: string; lease_expires_at: string }>("SELECT id, lease_expires_at FROM nodes");
    for (const node of after) {
      const was = before.find((b) => b.id === node.id)!;
      expect(Number(node.lease_expires_at)).toBeGreaterThan(Number(was.lease_expires_at));
    }
  });
});
