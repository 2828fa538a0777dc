import { describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { keeperState, startKeeper } from "../helpers/memory-keeper.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let _server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  _server = s;
  api = a;
});

const state = (id: string) => keeperState(api, id);

describe("snapshots and fork", () => {
  it("snapshots a running sandbox with memory and forks it into independent children", async () => {
    const source = await api.createSandbox({ env: { ROLE: "source" }, metadata: { family: "snap" } });
    await api.put(`/v1/sandboxes/${source.id}/files?path=/workspace/data.txt`, "from the source");
    const before = await startKeeper(api, source.id);

    const snap = await api.post<{ id: string; status: string; sizeBytes: number; sourceSandboxId: string }>(
      `/v1/sandboxes/${source.id}/snapshots`,
      { name: "warm" },
    );
    expect(snap.status).toBe(201);
    expect(snap.body).toMatchObject({ status: "ready", sourceSandboxId: source.id });
    expect(snap.body.sizeBytes).toBeGreaterThan(0);
    // The source keeps running, with the same process.
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${source.id}`)).body.status).toBe("running");
    expect((await state(source.id)).token).toBe(before.token);

    const children = await Promise.all(
      [1, 2, 3].map(() => api.createSandbox({ snapshotId: snap.body.id, metadata: { family: "child" } })),
    );
    expect(new Set(children.map((c) => c.id)).size).toBe(3);
    expect(new Set(children.map((c) => c.trafficToken)).size).toBe(3);
    for (const [i, child] of children.entries()) {
      expect(child.envKeys).toEqual(source.envKeys);
      expect(child.envKeys).toContain("ROLE");
      const s = await state(child.id);
      expect(s.token).toBe(before.token);
      await waitFor(async () => ((await state(child.id)).n > s.n ? true : undefined), 5000, "the child's process");
      expect((await api.exec(child.id, { command: "cat /workspace/data.txt; echo; echo $ROLE" })).stdout).toBe(
        "from the source\nsource\n",
      );
      await api.put(`/v1/sandboxes/${child.id}/files?path=/workspace/mine.txt`, `child ${i}`);
    }
    // Children are independent of each other and of the source.
    for (const [i, child] of children.entries()) {
      expect((await api.exec(child.id, { command: "cat /workspace/mine.txt" })).stdout).toBe(`child ${i}`);
    }
    expect((await api.exec(source.id, { command: "test -e /workspace/mine.txt && echo yes || echo no" })).stdout).toBe(
      "no\n",
    );

    const listed = await api.get<{ snapshots: { id: string }[] }>("/v1/snapshots");
    expect(listed.body.snapshots.map((s) => s.id)).toContain(snap.body.id);
    expect((await api.del(`/v1/snapshots/${snap.body.id}`)).status).toBe(204);
    const gone = await api.post<ErrorBody>("/v1/sandboxes", { snapshotId: snap.body.id });
    expect(gone.status).toBe(404);
    // Children live on without their snapshot.
    expect((await api.exec(children[0]!.id, { command: "echo ok" })).stdout).toBe("ok\n");
  });

  it("gives each child fresh randomness from the kernel, also through a file opened before the snapshot", async () => {
    const source = await api.createSandbox();
    // Opens /dev/urandom now, reads from it only once /tmp/go exists: after the snapshot, in each child.
    const script = [
      "import os, time",
      "f = open('/dev/urandom', 'rb', buffering=0)",
      "open('/tmp/ready', 'w').close()",
      "while not os.path.exists('/tmp/go'): time.sleep(0.05)",
      "open('/tmp/random', 'w').write(f.read(16).hex() + ' ' + os.urandom(16).hex())",
    ].join("\n");
    await api.put(`/v1/sandboxes/${source.id}/files?path=/workspace/draw.py`, script);
    await api.post(`/v1/sandboxes/${source.id}/exec`, { command: "python3 /workspace/draw.py", background: true });
    await waitFor(
      async () => ((await api.exec(source.id, { command: "test -e /tmp/ready && echo y" })).stdout ? true : undefined),
      10_000,
      "the drawing process",
    );
    const snap = await api.post<{ id: string }>(`/v1/sandboxes/${source.id}/snapshots`, { name: "random" });
    const children = await Promise.all([1, 2].map(() => api.createSandbox({ snapshotId: snap.body.id })));
    const draws: string[] = [];
    for (const child of [source, ...children]) {
      await api.exec(child.id, { command: "touch /tmp/go" });
      draws.push(
        await waitFor(
          async () => (await api.exec(child.id, { command: "cat /tmp/random 2>/dev/null" })).stdout || undefined,
          10_000,
          "a draw",
        ),
      );
    }
    // Six 16-byte draws (an fd opened before the snapshot, and a fresh read), all different.
    expect(new Set(draws.flatMap((d) => d.split(" "))).size).toBe(6);
    await api.del(`/v1/snapshots/${snap.body.id}`);
  });

  it("forks a live sandbox into N running children in one call", async () => {
    const source = await api.createSandbox();
    const { token } = await startKeeper(api, source.id);
    const forked = await api.post<{ sandboxes: SandboxBody[] }>(`/v1/sandboxes/${source.id}/fork`, { count: 2 });
    expect(forked.status).toBe(201);
    expect(forked.body.sandboxes).toHaveLength(2);
    for (const child of forked.body.sandboxes) {
      expect(child.status).toBe("running");
      expect(child.metadata.forkOf).toBe(source.id);
      expect((await state(child.id)).token).toBe(token);
    }
    expect((await api.get<{ snapshots: unknown[] }>("/v1/snapshots")).body.snapshots).toHaveLength(0);
  });
});
