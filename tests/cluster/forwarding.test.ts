// Any node answers any request: a sandbox lives on node A; exec, files, a terminal, the port proxy and
// every dialect reach it through nodes B and C, which pass the requests to A unbuffered. Each response
// names the node that answered it (x-sandpit-node): on one machine a node might reach another's sandbox
// by itself, so the header is what shows that the owner answered.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Sandbox as OpenSandbox } from "@alibaba-group/opensandbox";
import { Sandbox as VercelSandbox } from "@vercel/sandbox";
import { Sandbox as E2bSandbox } from "e2b";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.js";
import { serverEntry } from "../helpers/paths.js";
import { startPortApp, websocketEcho } from "../helpers/port-app.js";

const DOMAIN = "sandpit.test";
const NODE_HEADER = "x-sandpit-node";

let cluster: TestCluster;
let a: TestNode;
let b: TestNode;
let c: TestNode;
let sandbox: SandboxBody;

beforeAll(async () => {
  cluster = await startCluster(3, { SANDPIT_DOMAIN: DOMAIN });
  [a, b, c] = cluster.nodes as [TestNode, TestNode, TestNode];
  sandbox = await apiClient(a).createSandbox({ ports: [8000], placement: { node: a.nodeId } });
  expect(sandbox.node).toBe(a.nodeId);
  await startPortApp(apiClient(a), sandbox.id);
}, 300_000);

afterAll(async () => {
  await cluster?.close();
}, 120_000);

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

/**
 * A plain HTTP proxy on loopback in front of `node` that records which node answered each response: the
 * SDKs do not show response headers (E2B's even brings its own HTTP client).
 */
async function recordingProxy(node: TestNode): Promise<{ url: string; answeredBy: string[]; close(): Promise<void> }> {
  const answeredBy: string[] = [];
  const target = new URL(node.url);
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        answeredBy.push(String(up.headers[NODE_HEADER] ?? "(none)"));
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port } = proxy.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    answeredBy,
    close: () =>
      new Promise<void>((resolve) => {
        proxy.closeAllConnections();
        proxy.close(() => resolve());
      }),
  };
}

/** Reads an NDJSON response line by line. */
async function* ndjsonLines(res: Response): AsyncGenerator<Record<string, unknown>> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
      yield JSON.parse(buffer.slice(0, i)) as Record<string, unknown>;
      buffer = buffer.slice(i + 1);
    }
  }
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

describe("a sandbox on node A, through nodes B and C", () => {
  it("streams exec NDJSON through B: the first line arrives before the command ends", async () => {
    const res = await fetch(`${b.url}/v1/sandboxes/${sandbox.id}/exec`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${b.apiKey}`,
        accept: "application/x-ndjson",
        "content-type": "application/json",
        "x-request-id": "fwd-exec-1",
      },
      body: JSON.stringify({
        command: "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; exit 3",
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get(NODE_HEADER)).toBe(a.nodeId);
    expect(res.headers.get("x-request-id")).toBe("fwd-exec-1");
    const lines: Record<string, unknown>[] = [];
    for await (const line of ndjsonLines(res)) {
      lines.push(line);
      // The command waits for this file: "first" came through while it was still running.
      if (line.type === "stdout" && line.data === "first\n") {
        expect((await apiClient(c).put(`/v1/sandboxes/${sandbox.id}/files?path=/tmp/go`, "")).status).toBe(201);
      }
    }
    expect(lines).toContainEqual({ type: "stdout", data: "first\n" });
    expect(lines).toContainEqual({ type: "stdout", data: "second\n" });
    expect(lines.at(-1)).toMatchObject({ type: "exit", exitCode: 3 });
  });

  it("uploads a multi-MB file through B and downloads it through C, byte for byte", async () => {
    const body = randomBytes(24 * 1024 * 1024 + 5);
    const upload = await apiClient(b).put(`/v1/sandboxes/${sandbox.id}/files?path=/tmp/big.bin`, body);
    expect(upload.status).toBe(201);
    expect(upload.headers.get(NODE_HEADER)).toBe(a.nodeId);
    const download = await apiClient(c).get<Buffer>(`/v1/sandboxes/${sandbox.id}/files?path=/tmp/big.bin`);
    expect(download.status).toBe(200);
    expect(download.headers.get(NODE_HEADER)).toBe(a.nodeId);
    expect(download.body.length).toBe(body.length);
    expect(sha256(download.body)).toBe(sha256(body));
    const inside = await apiClient(a).exec(sandbox.id, { command: "sha256sum /tmp/big.bin | cut -d' ' -f1" });
    expect(inside.stdout.trim()).toBe(sha256(body));
  });

  it("runs a terminal WebSocket through B", async () => {
    const created = await apiClient(b).post<{ terminalId: string }>(`/v1/sandboxes/${sandbox.id}/terminals`, {});
    expect(created.status).toBe(201);
    expect(created.headers.get(NODE_HEADER)).toBe(a.nodeId);
    const ws = new WebSocket(
      `${b.url.replace("http", "ws")}/v1/sandboxes/${sandbox.id}/terminals/${created.body.terminalId}`,
      { headers: { authorization: `Bearer ${b.apiKey}` } },
    );
    let output = "";
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) output += data.toString("utf8");
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    ws.send(Buffer.from("echo via-$((40+2))\r"), { binary: true });
    await waitFor(async () => (/via-42/.test(output) ? true : undefined), 15_000, "the terminal's output");
    ws.close();
  });

  it("proxies the sandbox's port through C, by path and by host name, HTTP and WebSocket", async () => {
    const byPath = await fetch(`${c.url}/v1/sandboxes/${sandbox.id}/ports/8000/hello?x=1`, {
      method: "POST",
      headers: { "x-sandpit-traffic-token": sandbox.trafficToken },
      body: "payload",
    });
    expect(byPath.status).toBe(200);
    expect(byPath.headers.get(NODE_HEADER)).toBe(a.nodeId);
    expect(await byPath.json()).toEqual({ method: "POST", url: "/hello?x=1", body: "payload", token: null });

    const byHost = await new Promise<{ status: number; node: string | undefined; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: new URL(c.url).port,
          path: "/by-host",
          headers: { host: `8000-${sandbox.id}.${DOMAIN}`, "x-sandpit-traffic-token": sandbox.trafficToken },
        },
        (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on("end", () =>
            resolve({ status: res.statusCode!, node: res.headers[NODE_HEADER] as string | undefined, body }),
          );
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(byHost).toMatchObject({ status: 200, node: a.nodeId });
    expect(JSON.parse(byHost.body)).toMatchObject({ url: "/by-host" });

    const path = `/v1/sandboxes/${sandbox.id}/ports/8000/ws`;
    expect(await websocketEcho(c.url, path, { "X-Sandpit-Traffic-Token": sandbox.trafficToken }, "hi")).toBe("echo:hi");
  });

  it("answers a sandbox it does not know locally (404), without asking another node", async () => {
    const res = await apiClient(b).get("/v1/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa");
    expect(res.status).toBe(404);
    expect(res.headers.get(NODE_HEADER)).toBe(b.nodeId);
  });
});

describe("every dialect through a node that does not own the sandbox", () => {
  it("E2B: connect, commands and files through B's REST API and envd", async () => {
    process.env.SANDPIT_DATABASE_URL = cluster.databaseUrl;
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const { key } = await createApiKey({ dataDir: b.dataDir, org: "default", format: "e2b" });
    const viaB = await recordingProxy(b);
    try {
      Object.assign(process.env, {
        E2B_API_KEY: key,
        E2B_API_URL: `${viaB.url}/e2b`,
        E2B_SANDBOX_URL: `${viaB.url}/e2b/envd`,
        E2B_DOMAIN: DOMAIN,
      });
      const e2b = await E2bSandbox.connect(sandbox.id);
      const run = await e2b.commands.run("echo from-e2b-$((1+1))");
      expect(run.stdout).toBe("from-e2b-2\n");
      await e2b.files.write("/tmp/e2b.txt", "e2b through b");
      expect(await e2b.files.read("/tmp/e2b.txt")).toBe("e2b through b");
      expect(viaB.answeredBy.length).toBeGreaterThan(2);
      expect(new Set(viaB.answeredBy)).toEqual(new Set([a.nodeId]));
    } finally {
      await viaB.close();
    }
  });

  it("OpenSandbox: connect and run a command through C's lifecycle API and execd", async () => {
    const viaC = await recordingProxy(c);
    try {
      Object.assign(process.env, {
        OPEN_SANDBOX_DOMAIN: `${new URL(viaC.url).host}/opensandbox`,
        OPEN_SANDBOX_API_KEY: c.apiKey,
      });
      const os = await OpenSandbox.connect({ sandboxId: sandbox.id });
      const run = await os.commands.run("echo from-opensandbox");
      expect(run.logs.stdout.map((m) => m.text).join("")).toContain("from-opensandbox");
      expect(viaC.answeredBy.length).toBeGreaterThan(1);
      expect(new Set(viaC.answeredBy)).toEqual(new Set([a.nodeId]));
    } finally {
      await viaC.close();
    }
  });

  it("Vercel: a sandbox by name and its session, created through A, used through nodes that do not hold it", async () => {
    /** The SDK's credentials against one node, recording which node answered. */
    const via = (node: TestNode, answeredBy: string[]) => ({
      token: node.apiKey,
      teamId: "team_sandpit",
      projectId: "prj_cluster",
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        const res = await fetch(String(input).replace("https://vercel.com/api", `${node.url}/vercel`), init);
        answeredBy.push(res.headers.get(NODE_HEADER) ?? "(none)");
        return res;
      },
    });
    const onA: string[] = [];
    const created = await VercelSandbox.create({ name: "fwd-named", ...via(a, onA) });
    // Placement chose the session's node; the create itself was answered by A, where it arrived.
    expect(onA[0]).toBe(a.nodeId);
    const listed = await apiClient(a).get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.vercel.name=fwd-named");
    const owner = listed.body.sandboxes[0]!.node;
    const other = cluster.nodes.find((n) => n.nodeId !== owner && n.nodeId !== a.nodeId) ?? b;
    const throughOther: string[] = [];
    // By name: the node that gets the request finds the name's newest session, and its node answers.
    const named = await VercelSandbox.get({ name: "fwd-named", ...via(other, throughOther) });
    expect(named.name).toBe(created.name);
    const run = await named.runCommand("sh", ["-c", "echo from-vercel"]);
    expect(await run.stdout()).toBe("from-vercel\n");
    expect(throughOther.length).toBeGreaterThan(1);
    expect(new Set(throughOther)).toEqual(new Set([owner]));
    // By session id too, through B (the fixture's sandbox lives on A).
    const throughB: string[] = [];
    const bySession = await VercelSandbox.get({ name: sandbox.id, ...via(b, throughB) });
    expect((await bySession.runCommand("true")).exitCode).toBe(0);
    expect(throughB.length).toBeGreaterThan(1);
    expect(new Set(throughB)).toEqual(new Set([a.nodeId]));
  });

  it("Leap0, ZWRM and Nullspace: a call each through C", async () => {
    const call = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(`${c.url}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${c.apiKey}`, "content-type": "application/json", ...init.headers },
      });
      return {
        status: res.status,
        node: res.headers.get(NODE_HEADER),
        body: (await res.json()) as Record<string, unknown>,
      };
    };
    const leap0 = await call(`/leap0/v1/sandbox/${sandbox.id}`);
    expect(leap0).toMatchObject({ status: 200, node: a.nodeId, body: { id: sandbox.id } });
    const zwrm = await call(`/zwrm/v1/sandboxes/${sandbox.id}/exec`, {
      method: "POST",
      body: JSON.stringify({ command: "echo from-zwrm" }),
    });
    expect(zwrm).toMatchObject({ status: 200, node: a.nodeId, body: { stdout: "from-zwrm\n", exit_code: 0 } });
    const nullspace = await call(`/nullspace/v1/sandboxes/${sandbox.id}`);
    expect(nullspace).toMatchObject({ status: 200, node: a.nodeId, body: { id: sandbox.id } });
  });
});
