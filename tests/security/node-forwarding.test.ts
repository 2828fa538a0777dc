// Attacks on forwarding between nodes: headers that claim a request comes from another node are only
// believed with a valid signature (the cluster secret over node, method, path and time), a node's
// signature grants nothing a user key would, and a forwarded request never travels a second hop.
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { apiClient, type SandboxBody } from "../helpers/api.js";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";

const NODE_HEADER = "x-sandpit-node";

let cluster: TestCluster;
let a: TestNode;
let b: TestNode;
let sandbox: SandboxBody;

beforeAll(async () => {
  cluster = await startCluster(2);
  [a, b] = cluster.nodes as [TestNode, TestNode];
  sandbox = await apiClient(a).createSandbox({ placement: { node: a.nodeId } });
  expect(sandbox.node).toBe(a.nodeId);
}, 300_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

/** Node headers as a node signs them (written out here, so that the test does not trust the server's code). */
function nodeHeaders(opts: { from: string; method: string; path: string; at?: number; secret?: string }) {
  const at = String(opts.at ?? Date.now());
  const signature = createHmac("sha256", opts.secret ?? cluster.secret)
    .update(`${opts.from}\n${opts.method}\n${opts.path}\n${at}`)
    .digest("hex");
  return { "x-sandpit-node-from": opts.from, "x-sandpit-node-at": at, "x-sandpit-node-signature": signature };
}

async function call(node: TestNode, method: string, path: string, headers: Record<string, string>) {
  const res = await fetch(`${node.url}${path}`, { method, headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

describe("forged forwarding", () => {
  it("refuses node headers without a valid signature, on the owner and on any other node", async () => {
    const path = `/v1/sandboxes/${sandbox.id}`;
    const user = { authorization: `Bearer ${a.apiKey}` };
    const forgeries: Record<string, string>[] = [
      { "x-sandpit-node-from": b.nodeId },
      { ...nodeHeaders({ from: b.nodeId, method: "GET", path }), "x-sandpit-node-signature": "0".repeat(64) },
      nodeHeaders({ from: b.nodeId, method: "GET", path, secret: "not-the-cluster-secret" }),
      nodeHeaders({ from: b.nodeId, method: "GET", path, at: Date.now() - 5 * 60_000 }),
      // A signature captured for one request does not carry another method, path or sender.
      nodeHeaders({ from: b.nodeId, method: "DELETE", path }),
      nodeHeaders({ from: b.nodeId, method: "GET", path: `${path}/files?path=/etc/passwd` }),
      { ...nodeHeaders({ from: b.nodeId, method: "GET", path }), "x-sandpit-node-from": a.nodeId },
    ];
    for (const node of [a, b]) {
      for (const forged of forgeries) {
        const res = await call(node, "GET", path, { ...user, ...forged });
        expect(res.status, `${node.nodeId} ${JSON.stringify(forged)}`).toBe(401);
        expect(res.body).toMatchObject({ error: { code: "unauthorized" } });
      }
    }
    // The same request without the forged headers works: only the claim was refused.
    expect((await call(b, "GET", path, user)).status).toBe(200);
  });

  it("refuses forged node headers on a WebSocket upgrade", async () => {
    const terminal = await apiClient(a).post<{ terminalId: string }>(`/v1/sandboxes/${sandbox.id}/terminals`, {});
    const path = `/v1/sandboxes/${sandbox.id}/terminals/${terminal.body.terminalId}`;
    for (const node of [a, b]) {
      const ws = new WebSocket(`${node.url.replace("http", "ws")}${path}`, {
        headers: { authorization: `Bearer ${a.apiKey}`, "x-sandpit-node-from": b.nodeId },
      });
      const status = await new Promise<number>((resolve, reject) => {
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode!));
        ws.on("open", () => reject(new Error("the forged upgrade was accepted")));
      });
      expect(status).toBe(401);
    }
  });

  it("grants nothing with a valid node signature: the owner still checks the user's key", async () => {
    const path = `/v1/sandboxes/${sandbox.id}/exec`;
    const signed = nodeHeaders({ from: b.nodeId, method: "POST", path });
    const res = await fetch(`${a.url}${path}`, {
      method: "POST",
      headers: { ...signed, "content-type": "application/json" },
      body: JSON.stringify({ command: "id" }),
    });
    expect(res.status).toBe(401);
    // Refused for want of a user key, not for the node signature (which holds).
    const refusal = (await res.json()) as { error: { message: string } };
    expect(refusal.error.message).not.toMatch(/node/);
    // And through a non-owner, a wrong key is refused by the owner as it would be directly.
    const wrongKey = await call(b, "GET", `/v1/sandboxes/${sandbox.id}`, { authorization: "Bearer sp_wrong" });
    expect(wrongKey.status).toBe(401);
    expect(wrongKey.headers.get(NODE_HEADER)).toBe(a.nodeId);
  });
});

describe("one hop", () => {
  it("answers a forwarded request for a sandbox the node does not own with 503 + Retry-After, in each API's shape", async () => {
    const native = `/v1/sandboxes/${sandbox.id}`;
    const nativeRes = await call(b, "GET", native, {
      authorization: `Bearer ${b.apiKey}`,
      ...nodeHeaders({ from: a.nodeId, method: "GET", path: native }),
    });
    expect(nativeRes.status).toBe(503);
    expect(nativeRes.headers.get("retry-after")).toBe("1");
    expect(nativeRes.body).toMatchObject({ error: { code: "runtime_unavailable" } });

    const zwrm = `/zwrm/v1/sandboxes/${sandbox.id}`;
    const zwrmRes = await call(b, "GET", zwrm, {
      authorization: `Bearer ${b.apiKey}`,
      ...nodeHeaders({ from: a.nodeId, method: "GET", path: zwrm }),
    });
    expect(zwrmRes.status).toBe(503);
    expect(zwrmRes.headers.get("retry-after")).toBe("1");
    expect(zwrmRes.body).toMatchObject({ code: "unavailable" });
    expect(typeof zwrmRes.body.error).toBe("string");
  });
});
