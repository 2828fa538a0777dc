// Sandboxes that change node through the shared directory: a drained node's running sandbox continues on
// another node (same id, memory, processes, files), a sandbox paused on a node that dies resumes on
// another, and a snapshot taken on one node starts a child on another.
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";
import { keeperState, startKeeper } from "../helpers/memory-keeper.js";
import { queryDatabase } from "../helpers/postgres.js";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster(3);
}, 180_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

/** What `sandpit nodes drain` does in the database (Store.setNodeState). */
async function setNodeState(node: TestNode, state: "ready" | "draining") {
  await queryDatabase(cluster.databaseUrl, "UPDATE nodes SET state = $1 WHERE id = $2", [state, node.nodeId]);
}

const nodeById = (id: string) => cluster.nodes.find((n) => n.nodeId === id)!;

/** A running sandbox on `node` with the memory keeper counting and a file on its disk. */
async function sandboxWithState(node: TestNode) {
  const api = apiClient(node);
  const sandbox = await api.createSandbox({ timeoutMs: 600_000, placement: { node: node.nodeId } });
  expect(sandbox.node).toBe(node.nodeId);
  await api.exec(sandbox.id, { command: "echo kept-on-disk > /root/marker.txt && sync" });
  const keeper = await startKeeper(api, sandbox.id);
  return { sandbox, keeper, api };
}

async function eventsOf(node: TestNode, sandboxId: string) {
  const res = await apiClient(node).get<{ events: { type: string; data: Record<string, unknown> }[] }>(
    `/v1/events?sandboxId=${sandboxId}&order=asc`,
  );
  return res.body.events;
}

describe("moves between nodes", () => {
  it("a drained node's running sandbox continues on another node with its memory, processes and files", async () => {
    const [a, b] = cluster.nodes as [TestNode, TestNode, TestNode];
    const { sandbox, keeper } = await sandboxWithState(a);
    const before = await keeperState(apiClient(a), sandbox.id);

    await setNodeState(a, "draining");
    try {
      const moved = await waitFor(
        async () => {
          const r = await apiClient(b).get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
          return r.body.status === "running" && r.body.node !== a.nodeId ? r.body : undefined;
        },
        90_000,
        "the sandbox to run on another node",
      );
      expect(moved.id).toBe(sandbox.id);
      const owner = apiClient(nodeById(moved.node));
      // The same process (pid, token chosen at its start) continued counting: it was not restarted.
      const after = await keeperState(owner, sandbox.id);
      expect(after.pid).toBe(keeper.pid);
      expect(after.token).toBe(keeper.token);
      expect(after.n).toBeGreaterThanOrEqual(before.n);
      await waitFor(
        async () => ((await keeperState(owner, sandbox.id)).n > after.n ? true : undefined),
        10_000,
        "the counter to move on the new node",
      );
      expect((await owner.exec(sandbox.id, { command: "cat /root/marker.txt" })).stdout).toBe("kept-on-disk\n");
      expect((await owner.exec(sandbox.id, { command: "cat /etc/hostname" })).stdout.trim()).toBe(sandbox.id);

      const events = await eventsOf(b, sandbox.id);
      const types = events.map((e) => e.type);
      expect(types).toEqual(["sandbox.created", "sandbox.paused", "sandbox.moved", "sandbox.resumed"]);
      expect(events[1]!.data.reason).toBe("move");
      expect(events[2]!.data).toMatchObject({ from: a.nodeId, to: moved.node });
      expect(events[3]!.data.reason).toBe("move");

      // The node it left holds nothing of it any more: no sandbox directory, no network slot.
      await waitFor(
        async () => (existsSync(path.join(a.dataDir, "sandboxes", sandbox.id)) ? undefined : true),
        30_000,
        "the source's host state to go",
      );
      // Its paused image on shared storage is gone too: the sandbox runs again.
      expect(existsSync(path.join(cluster.sharedDir, "sandboxes", sandbox.id))).toBe(false);
      expect((await owner.del(`/v1/sandboxes/${sandbox.id}`)).status).toBe(204);
    } finally {
      await setNodeState(a, "ready");
    }
  }, 180_000);

  it("a snapshot taken on one node starts a child on another", async () => {
    const [a, , c] = cluster.nodes as [TestNode, TestNode, TestNode];
    const { sandbox, keeper, api } = await sandboxWithState(a);
    const snap = await api.post<{ id: string; status: string }>(`/v1/sandboxes/${sandbox.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    expect(existsSync(path.join(cluster.sharedDir, "snapshots", snap.body.id))).toBe(true);

    const onC = apiClient(c);
    const child = await onC.createSandbox({ snapshotId: snap.body.id, placement: { node: c.nodeId } });
    expect(child.node).toBe(c.nodeId);
    const state = await keeperState(onC, child.id);
    expect(state.token).toBe(keeper.token);
    expect((await onC.exec(child.id, { command: "cat /root/marker.txt" })).stdout).toBe("kept-on-disk\n");
    await onC.del(`/v1/sandboxes/${child.id}`);
    await api.del(`/v1/sandboxes/${sandbox.id}`);
    expect((await api.del(`/v1/snapshots/${snap.body.id}`)).status).toBe(204);
  }, 120_000);

  it("a sandbox paused on a node that then dies resumes through another node and continues", async () => {
    const [a, b] = cluster.nodes as [TestNode, TestNode, TestNode];
    // Another paused sandbox of node A, made first: its slot on A is the one the moved sandbox gets on B.
    const other = await apiClient(a).createSandbox({ placement: { node: a.nodeId } });
    expect((await apiClient(a).post(`/v1/sandboxes/${other.id}/pause`)).status).toBe(200);
    const { sandbox, keeper, api } = await sandboxWithState(a);
    const paused = await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/pause`);
    expect(paused.body.status).toBe("paused");
    await a.kill9();

    const onB = apiClient(b);
    // Until node A's lease runs out it may still come back for its sandbox: the resume says to retry.
    const resumed = await waitFor(
      async () => {
        const r = await onB.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/resume`);
        if (r.status === 503) return undefined;
        return r;
      },
      30_000,
      "the resume through node B",
    );
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ id: sandbox.id, status: "running", node: b.nodeId });
    const after = await keeperState(onB, sandbox.id);
    expect(after.pid).toBe(keeper.pid);
    expect(after.token).toBe(keeper.token);
    await waitFor(
      async () => ((await keeperState(onB, sandbox.id)).n > after.n ? true : undefined),
      10_000,
      "the counter to move on node B",
    );
    expect((await onB.exec(sandbox.id, { command: "cat /root/marker.txt" })).stdout).toBe("kept-on-disk\n");
    const moved = (await eventsOf(b, sandbox.id)).find((e) => e.type === "sandbox.moved");
    expect(moved?.data).toMatchObject({ from: a.nodeId, to: b.nodeId });

    // Destroying the other one through node B removes its image, and leaves B's network slot of the same
    // number (A's slots are not B's) to the sandbox that holds it.
    const [slots] = await queryDatabase<{ other: number; moved: number }>(
      cluster.databaseUrl,
      "SELECT (SELECT net_index FROM sandboxes WHERE id = $1) AS other, (SELECT net_index FROM sandboxes WHERE id = $2) AS moved",
      [other.id, sandbox.id],
    );
    expect(slots!.other).toBe(slots!.moved);
    expect((await onB.del(`/v1/sandboxes/${other.id}`)).status).toBe(204);
    expect(existsSync(path.join(cluster.sharedDir, "sandboxes", other.id))).toBe(false);
    expect(existsSync(`/var/run/netns/${b.netPrefix}-sandbox-${slots!.moved}`)).toBe(true);
    expect((await onB.exec(sandbox.id, { command: "cat /etc/hostname" })).stdout.trim()).toBe(sandbox.id);

    // Node A comes back: it clears what it had of the sandbox on its host and leaves the one on B alone.
    await a.restart();
    await waitFor(
      async () => (existsSync(path.join(a.dataDir, "sandboxes", sandbox.id)) ? undefined : true),
      10_000,
      "node A's leftovers to go",
    );
    expect((await onB.exec(sandbox.id, { command: "cat /root/marker.txt" })).stdout).toBe("kept-on-disk\n");
    expect((await onB.del(`/v1/sandboxes/${sandbox.id}`)).status).toBe(204);
  }, 180_000);
});
