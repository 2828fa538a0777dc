// PostgreSQL stopped for 10 s under a two-node cluster, then started again: running sandboxes keep
// answering what needs no write (exec, file reads), writes and creates answer a clear 503, creates in
// flight end once (running, or failed and cleaned up), and the nodes reconnect — nobody is declared lost.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiResponse, apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { containersOf, startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";
import { queryDatabase } from "../helpers/postgres.js";
import { scrapeSample } from "../helpers/prometheus.js";

const ADMIN_KEY = `sp_admin_${randomBytes(16).toString("hex")}`;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster(2, { SANDPIT_ADMIN_KEY: ADMIN_KEY });
}, 180_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

const query = <T>(sql: string, values: unknown[] = []) => queryDatabase<T>(cluster.databaseUrl, sql, values);

const alive = (node: TestNode) => {
  try {
    process.kill(node.pid, 0);
    return true;
  } catch {
    return false;
  }
};

const OUTAGE_MS = 10_000;

/** Returns as soon as the create tagged `inflight` has its record (a tight poll: a create takes < 1 s). */
async function untilRecorded(tag: string) {
  const client = new pg.Client({ connectionString: cluster.databaseUrl });
  await client.connect();
  try {
    const deadline = Date.now() + 30_000;
    const sql = "SELECT 1 FROM sandboxes WHERE metadata_json ->> 'inflight' = $1";
    while (!(await client.query(sql, [tag])).rowCount) {
      if (Date.now() > deadline) throw new Error(`create ${tag} never recorded`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await client.end();
  }
}

describe("a PostgreSQL outage", () => {
  it("leaves running sandboxes answering reads and execs, answers writes with a 503, and loses nothing", async () => {
    const [a, b] = cluster.nodes as [TestNode, TestNode];
    const api = apiClient(a);
    const s = await api.createSandbox({ placement: { node: a.nodeId }, metadata: { k: "before" } });
    const onB = await apiClient(b).createSandbox({ placement: { node: b.nodeId } });
    expect((await api.put(`/v1/sandboxes/${s.id}/files?path=%2Ftmp%2Fnote`, "kept\n")).status).toBe(201);
    const epochs = await query<{ id: string; epoch: number }>("SELECT id, epoch FROM nodes ORDER BY id");

    // Creates in flight when the database goes away: one just sent, one whose record was just written
    // (its sandbox is starting).
    const inFlight = [0, 1].map((i) =>
      api.call<SandboxBody | ErrorBody>("POST", "/v1/sandboxes", { metadata: { inflight: String(i) } }),
    );
    await untilRecorded("1");
    await cluster.postgres.stop();
    const stoppedAt = Date.now();
    let creates: ApiResponse<SandboxBody | ErrorBody>[] = [];
    try {
      creates = await Promise.all(inFlight);

      // What needs no write works: an exec (its record is bookkeeping) and a file read.
      const out = await api.exec(s.id, { args: ["sh", "-c", "echo during; cat /tmp/note"] });
      expect(out.stdout).toBe("during\nkept\n");
      const read = await api.get<Buffer>(`/v1/sandboxes/${s.id}/files?path=%2Ftmp%2Fnote`);
      expect(read.status).toBe(200);
      expect(read.body.toString()).toBe("kept\n");
      expect((await apiClient(b).exec(onB.id, { args: ["true"] })).exitCode).toBe(0);

      // Writes answer 503 with Retry-After, in the API's envelope.
      const write = await api.call<ErrorBody>("PATCH", `/v1/sandboxes/${s.id}`, { metadata: { k: "during" } });
      expect(write.status).toBe(503);
      expect(write.body.error.code).toBe("database_unavailable");
      expect(write.headers.get("retry-after")).toBe("2");
      const create = await apiClient(b).call<ErrorBody>("POST", "/v1/sandboxes", {});
      expect([create.status, create.body.error.code]).toEqual([503, "database_unavailable"]);

      // The outage lasts well past the nodes' leases (3 s).
      await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + OUTAGE_MS - Date.now())));
      expect([alive(a), alive(b)]).toEqual([true, true]);
    } finally {
      await cluster.postgres.start();
    }

    // Each create in flight either completed or failed with a clear 503.
    for (const res of creates) {
      if (res.status !== 201) {
        expect([res.status, (res.body as ErrorBody).error.code]).toEqual([503, "database_unavailable"]);
      }
    }

    // The nodes reconnect and renew their leases: nobody was declared lost, nobody registered again.
    await waitFor(
      async () => {
        const rows = await query<{ heartbeat_at: string }>("SELECT heartbeat_at FROM nodes").catch(() => []);
        return rows.length === 2 && rows.every((r) => Number(r.heartbeat_at) > stoppedAt + OUTAGE_MS)
          ? rows
          : undefined;
      },
      30_000,
      "both nodes renewing",
    );
    // The cluster's lost-node detection runs again after the outage (a new leader waits a whole lease
    // first, so that every live node renewed): and finds nobody lost.
    const detections = () =>
      Promise.all(
        cluster.nodes.map((n) => scrapeSample(n, ADMIN_KEY, "sandpit_cluster_job_runs_total", { job: "lost_nodes" })),
      );
    const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
    const before = sum(await detections());
    await waitFor(
      async () => (sum(await detections()) >= before + 2 ? true : undefined),
      30_000,
      "lost-node detections",
    );
    expect(
      await query<{ id: string; epoch: number; state: string }>("SELECT id, epoch, state FROM nodes ORDER BY id"),
    ).toEqual(epochs.map((e) => ({ ...e, state: "ready" })));
    for (const [node, id] of [
      [a, s.id],
      [b, onB.id],
    ] as const) {
      expect((await apiClient(node).get<SandboxBody>(`/v1/sandboxes/${id}`)).body).toMatchObject({ status: "running" });
    }
    // Writes work again.
    const patched = await api.call<SandboxBody>("PATCH", `/v1/sandboxes/${s.id}`, { metadata: { k: "after" } });
    expect([patched.status, patched.body.metadata]).toEqual([200, { k: "after" }]);

    // Nothing duplicated: one record at most per create in flight, running exactly when it answered 201;
    // the ones that failed end as failed creates and leave nothing on the host.
    for (const [i, res] of creates.entries()) {
      const records = await waitFor(
        async () => {
          const rows = await query<{ id: string; status: string }>(
            "SELECT id, status FROM sandboxes WHERE metadata_json ->> 'inflight' = $1",
            [String(i)],
          );
          return rows.every((r) => r.status !== "creating") ? rows : undefined;
        },
        30_000,
        `create ${i} settled`,
      );
      expect(records.length).toBeLessThanOrEqual(1);
      if (res.status === 201) {
        expect(records).toEqual([{ id: (res.body as SandboxBody).id, status: "running" }]);
      } else {
        expect(records.map((r) => r.status)).toEqual(records.length ? ["error"] : []);
        for (const r of records) expect(containersOf(a)).not.toContain(r.id);
      }
    }

    // Each node holds its node lock again (taken on a new connection after the restart).
    const locks = await waitFor(
      async () => {
        const rows = await query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = 7353102
           AND objid::bigint IN (SELECT hashtext(id)::bigint & 4294967295 FROM nodes)`,
        );
        return rows[0]!.n === 2 ? rows : undefined;
      },
      30_000,
      "the node locks taken again",
    );
    expect(locks[0]!.n).toBe(2);
  });
});
