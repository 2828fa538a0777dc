import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import type { SandboxOwner } from "../domain/index.js";
import { ApiError, errorEnvelope } from "../errors.js";
import { forSandbox, forwardToOwners } from "../http/sandbox-forwarding.js";
import { TrafficRouter } from "../http/traffic-router.js";
import { onUpgrade, rejectUpgrade } from "../http/upgrades.js";
import { answerBeforeBody } from "../http/upload-limit.js";
import { NODE_AUTH_HEADERS, signNodeRequest } from "./node-auth.js";
import { NodeClient } from "./node-client.js";
import { clientAddressOf, NodeForwarder } from "./node-forwarder.js";

// The mechanism between two real Fastify servers on loopback: node "a" owns the sandboxes, node "b"
// forwards to it. Routes here are stand-ins that show what passed through (no sandboxes, no root).
const SECRET = "test-cluster-secret";
const DOMAIN = "sandpit.test";
const ON_A = "sbx_aaaaaaaaaaaaaaaaaaaa";
const ON_GONE_NODE = "sbx_gggggggggggggggggggg";
const ON_STOPPED_NODE = "sbx_ssssssssssssssssssss";

interface TestNode {
  app: FastifyInstance;
  url: string;
  /** Resolves the gate of the streaming route; the stream ends after it. */
  release?: () => void;
  /** Requests whose client went away, by path. */
  closed: string[];
}

const owners = new Map<string, SandboxOwner>();
/** While set, the store does not answer (PostgreSQL is down). */
let storeDown = false;
const nodes: Record<"a" | "b", TestNode> = {} as Record<"a" | "b", TestNode>;

async function startNode(nodeId: string): Promise<TestNode> {
  // As the real app does: a request keeps the id its client gave it.
  const app = Fastify({ genReqId: (req) => String(req.headers["x-request-id"] ?? "none") });
  const node: TestNode = { app, url: "", closed: [] };
  const forwarder = new NodeForwarder(new NodeClient(nodeId, SECRET), async (id) => {
    if (storeDown) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
    return owners.get(id);
  });
  app.setErrorHandler((error: ApiError | Error, _request, reply) => {
    const apiError = error instanceof ApiError ? error : new ApiError("internal", error.message);
    for (const [k, v] of Object.entries(apiError.headers ?? {})) reply.header(k, v);
    return reply.code(apiError.status).send(errorEnvelope(apiError));
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));

  const traffic = new TrafficRouter(DOMAIN);
  forwardToOwners(app, forwarder, traffic);
  app.addHook("onRequest", traffic.hook);
  traffic.onOtherPorts(async (request, reply, target) => {
    reply.hijack();
    reply.raw.end(`port ${target.port} of ${target.sandboxId} on ${nodeId}, path ${request.raw.url}`);
  });
  traffic.onPath(
    (url) => url.startsWith("/traffic/"),
    (req) => req.headers["x-sandbox"] as string | undefined,
    async (_request, reply) => {
      reply.hijack();
      reply.raw.end(`path traffic on ${nodeId}`);
    },
  );

  app.get("/v1/sandboxes/:id", forSandbox("id"), async (request) => ({
    node: nodeId,
    requestId: request.id,
    authorization: request.headers.authorization ?? null,
    client: clientAddressOf(request.raw),
    query: request.query,
  }));
  app.get("/v1/sandboxes/:id/stream", forSandbox("id"), async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson" });
    reply.raw.write(`${JSON.stringify({ chunk: 1 })}\n`);
    await new Promise<void>((resolve) => {
      node.release = resolve;
    });
    reply.raw.end(`${JSON.stringify({ chunk: 2 })}\n`);
  });
  app.get("/v1/sandboxes/:id/forever", forSandbox("id"), async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200);
    reply.raw.write("started\n");
    const tick = setInterval(() => reply.raw.write("."), 5);
    reply.raw.on("close", () => {
      clearInterval(tick);
      node.closed.push(request.url);
    });
  });
  app.put("/v1/sandboxes/:id/upload", forSandbox("id"), async (request) => {
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of request.raw) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { node: nodeId, size, sha256: hash.digest("hex") };
  });
  app.get("/v1/sandboxes/:id/dies", forSandbox("id"), async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200);
    reply.raw.write("partial");
    setImmediate(() => reply.raw.destroy());
  });
  app.put("/v1/sandboxes/:id/refuse", forSandbox("id"), async () => {
    throw new ApiError("payload_too_large", "refused from its headers");
  });
  app.get("/v1/sandboxes/:id/download", forSandbox("id"), async (request, reply) => {
    const size = Number((request.query as { size: string }).size);
    reply.header("content-type", "application/octet-stream");
    return reply.send(Buffer.alloc(size, 7));
  });

  const sockets = new WebSocketServer({ noServer: true });
  const ECHO = /^\/v1\/sandboxes\/([^/?]+)\/echo$/;
  onUpgrade(app, {
    claims: (req) => ECHO.test(req.url ?? ""),
    sandboxOf: (req) => ECHO.exec(req.url ?? "")?.[1],
    handle: (req, socket, head) => {
      if (req.headers.authorization !== "Bearer user-key") {
        rejectUpgrade(socket, new ApiError("unauthorized", "no key"));
        return;
      }
      sockets.handleUpgrade(req, socket, head, (ws) => {
        ws.on("message", (data) => ws.send(`${nodeId}:${String(data)}`));
      });
    },
  });

  answerBeforeBody(app.server);
  await app.listen({ host: "127.0.0.1", port: 0 });
  node.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return node;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(
  url: string,
  options: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer; localAddress?: string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(options.path, url), {
      method: options.method ?? "GET",
      headers: options.headers,
      localAddress: options.localAddress,
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

const json = (answer: Answer) => JSON.parse(answer.body.toString()) as Record<string, unknown>;

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(condition()).toBe(true);
}

beforeAll(async () => {
  nodes.a = await startNode("a");
  nodes.b = await startNode("b");
  owners.set(ON_A, { nodeId: "a", url: nodes.a.url, state: "ready", leaseLive: true });
  // A node that is registered but does not answer (its port is closed).
  const gone = http.createServer();
  await new Promise<void>((r) => gone.listen(0, "127.0.0.1", r));
  const port = (gone.address() as AddressInfo).port;
  await new Promise<void>((r) => gone.close(() => r()));
  owners.set(ON_GONE_NODE, { nodeId: "gone", url: `http://127.0.0.1:${port}`, state: "ready", leaseLive: true });
  // A node whose lease ran out (stopped, cut off) but not declared lost yet: it may accept connections and
  // never answer, so it is not waited for.
  owners.set(ON_STOPPED_NODE, { nodeId: "a", url: nodes.a.url, state: "ready", leaseLive: false });
});

afterAll(async () => {
  await nodes.a?.app.close();
  await nodes.b?.app.close();
});

describe("a request for a sandbox on another node", () => {
  it("is answered by its owner, with the client's credentials, address, query and request id, naming the owner", async () => {
    const answer = await request(nodes.b.url, {
      path: `/v1/sandboxes/${ON_A}?x=1&y=two`,
      headers: { authorization: "Bearer user-key", "x-request-id": "req-forwarded-1" },
      // The client is 127.0.0.2; node b reaches node a from 127.0.0.1.
      localAddress: "127.0.0.2",
    });
    expect(answer.status).toBe(200);
    expect(json(answer)).toEqual({
      node: "a",
      requestId: "req-forwarded-1",
      authorization: "Bearer user-key",
      client: "127.0.0.2",
      query: { x: "1", y: "two" },
    });
    expect(answer.headers["x-sandpit-node"]).toBe("a");
  });

  it("is answered locally when the sandbox is unknown or lives here", async () => {
    const unknown = await request(nodes.b.url, { path: "/v1/sandboxes/sbx_uuuuuuuuuuuuuuuuuuuu" });
    expect(json(unknown).node).toBe("b");
    expect(unknown.headers["x-sandpit-node"]).toBe("b");
    const own = await request(nodes.a.url, { path: `/v1/sandboxes/${ON_A}` });
    expect(json(own).node).toBe("a");
  });

  it("streams the response: the first chunk arrives before the owner's response ends", async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`${nodes.b.url}/v1/sandboxes/${ON_A}/stream`, resolve).on("error", reject),
    );
    const lines: string[] = [];
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => lines.push(...chunk.split("\n").filter(Boolean)));
    await until(() => lines.length === 1);
    expect(JSON.parse(lines[0]!)).toEqual({ chunk: 1 });
    nodes.a.release!();
    await new Promise((r) => res.on("end", r));
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ chunk: 1 }, { chunk: 2 }]);
  });

  it("passes a multi-MB body both ways, byte for byte", async () => {
    const body = randomBytes(12 * 1024 * 1024 + 17);
    const upload = await request(nodes.b.url, {
      method: "PUT",
      path: `/v1/sandboxes/${ON_A}/upload`,
      headers: { "content-type": "application/octet-stream" },
      body,
    });
    expect(json(upload)).toEqual({
      node: "a",
      size: body.length,
      sha256: createHash("sha256").update(body).digest("hex"),
    });
    const chunked = await new Promise<Answer>((resolve, reject) => {
      const req = http.request(`${nodes.b.url}/v1/sandboxes/${ON_A}/upload`, { method: "PUT" }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on("error", reject);
      // No Content-Length: the body goes chunked, in pieces.
      for (let i = 0; i < 4; i++) req.write(body.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
      req.end();
    });
    expect(json(chunked)).toMatchObject({ node: "a", size: 4 * 1024 * 1024 });
    const download = await request(nodes.b.url, { path: `/v1/sandboxes/${ON_A}/download?size=${9 * 1024 * 1024}` });
    expect(download.status).toBe(200);
    expect(download.body.equals(Buffer.alloc(9 * 1024 * 1024, 7))).toBe(true);
  });

  it("leaves Expect: 100-continue to the owner: the body leaves only when the owner reads it", async () => {
    const send = (path: string, body: Buffer) =>
      new Promise<{ status: number; continued: boolean; body: string }>((resolve, reject) => {
        let continued = false;
        const req = http.request(`${nodes.b.url}${path}`, {
          method: "PUT",
          headers: { expect: "100-continue", "content-length": body.length },
        });
        req.on("continue", () => {
          continued = true;
          req.end(body);
        });
        req.on("response", (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode!, continued, body: text }));
        });
        req.on("error", reject);
        req.flushHeaders();
      });
    const refused = await send(`/v1/sandboxes/${ON_A}/refuse`, Buffer.alloc(1024 * 1024));
    expect(refused).toMatchObject({ status: 413, continued: false });
    const accepted = await send(`/v1/sandboxes/${ON_A}/upload`, Buffer.alloc(3 * 1024 * 1024, 1));
    expect(accepted.status).toBe(200);
    expect(accepted.continued).toBe(true);
    expect(JSON.parse(accepted.body)).toMatchObject({ node: "a", size: 3 * 1024 * 1024 });
    // The connection that never carried the refused body is not reused for the next request.
    const after = await request(nodes.b.url, { path: `/v1/sandboxes/${ON_A}` });
    expect(json(after).node).toBe("a");
  });

  it("is aborted on the owner when the client goes away", async () => {
    const path = `/v1/sandboxes/${ON_A}/forever`;
    const req = http.get(`${nodes.b.url}${path}`);
    const res = await new Promise<http.IncomingMessage>((resolve) => req.on("response", resolve));
    await new Promise((r) => res.once("data", r));
    req.on("error", () => {});
    req.destroy();
    await until(() => nodes.a.closed.includes(path));
  });

  it("ends the client's response unfinished when the owner's ends unfinished", async () => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`${nodes.b.url}/v1/sandboxes/${ON_A}/dies`, resolve).on("error", reject),
    );
    res.on("error", () => {});
    res.resume();
    await new Promise((r) => res.on("close", r));
    expect(res.complete).toBe(false);
  });

  it("passes WebSocket upgrades to the owner, and its refusals back", async () => {
    const ws = new WebSocket(`${nodes.b.url.replace("http", "ws")}/v1/sandboxes/${ON_A}/echo`, {
      headers: { authorization: "Bearer user-key" },
    });
    const reply = await new Promise<string>((resolve, reject) => {
      ws.on("open", () => ws.send("hello"));
      ws.on("message", (data) => resolve(String(data)));
      ws.on("error", reject);
    });
    expect(reply).toBe("a:hello");
    ws.close();
    const refused = new WebSocket(`${nodes.b.url.replace("http", "ws")}/v1/sandboxes/${ON_A}/echo`);
    const status = await new Promise<number>((resolve) =>
      refused.on("unexpected-response", (_req, res) => resolve(res.statusCode!)),
    );
    expect(status).toBe(401);
  });

  it("passes port traffic by host name and sandbox traffic by path to the owner", async () => {
    const byHost = await request(nodes.b.url, {
      path: "/some/page?q=1",
      headers: { host: `3000-${ON_A}.${DOMAIN}` },
    });
    expect(byHost.body.toString()).toBe(`port 3000 of ${ON_A} on a, path /some/page?q=1`);
    expect(byHost.headers["x-sandpit-node"]).toBe("a");
    const byPath = await request(nodes.b.url, { path: "/traffic/x", headers: { "x-sandbox": ON_A } });
    expect(byPath.body.toString()).toBe("path traffic on a");
  });

  it("is answered here when its node's lease ran out, not sent to a node that may never answer", async () => {
    const answer = await request(nodes.b.url, { path: `/v1/sandboxes/${ON_STOPPED_NODE}` });
    expect(answer.headers["x-sandpit-node"]).toBe("b");
  });

  it("answers 503 with Retry-After when the owner does not answer", async () => {
    const answer = await request(nodes.b.url, { path: `/v1/sandboxes/${ON_GONE_NODE}` });
    expect(answer.status).toBe(503);
    expect(answer.headers["retry-after"]).toBe("1");
    expect(json(answer)).toMatchObject({ error: { code: "runtime_unavailable" } });
  });
});

describe("while the database does not answer", () => {
  it("forwards to the owner it last knew, and answers unknown sandboxes here", async () => {
    expect(json(await request(nodes.b.url, { path: `/v1/sandboxes/${ON_A}` })).node).toBe("a");
    storeDown = true;
    try {
      const known = await request(nodes.b.url, { path: `/v1/sandboxes/${ON_A}` });
      expect(json(known).node).toBe("a");
      const unknown = await request(nodes.b.url, { path: "/v1/sandboxes/sbx_vvvvvvvvvvvvvvvvvvvv" });
      expect(json(unknown).node).toBe("b");
    } finally {
      storeDown = false;
    }
  });
});

describe("forwarding between nodes", () => {
  const signed = (path: string, nodeId = "b", at = Date.now(), secret = SECRET) =>
    signNodeRequest(secret, nodeId, "GET", path, at);

  it("goes one hop: a forwarded request for a sandbox the receiver does not own gets 503 + Retry-After", async () => {
    const path = `/v1/sandboxes/${ON_A}`;
    const answer = await request(nodes.b.url, { path, headers: signed(path, "a") });
    expect(answer.status).toBe(503);
    expect(answer.headers["retry-after"]).toBe("1");
    expect(json(answer)).toMatchObject({ error: { code: "runtime_unavailable" } });
  });

  it("refuses headers that claim a forward without a valid signature (forged, stale, other secret, other path)", async () => {
    const path = `/v1/sandboxes/${ON_A}`;
    const forgeries: http.OutgoingHttpHeaders[] = [
      { [NODE_AUTH_HEADERS.from]: "b" },
      { ...signed(path), [NODE_AUTH_HEADERS.signature]: "AAAA" },
      signed(path, "b", Date.now() - 10 * 60_000),
      signed(path, "b", Date.now(), "another-secret"),
      signed(`/v1/sandboxes/${ON_A}/files`),
      { ...signed(path), [NODE_AUTH_HEADERS.from]: "a" },
      { ...signed(path), [NODE_AUTH_HEADERS.at]: String(Date.now() + 1) },
    ];
    for (const headers of forgeries) {
      const answer = await request(nodes.a.url, { path, headers });
      expect(answer.status, JSON.stringify(headers)).toBe(401);
      expect(json(answer)).toMatchObject({ error: { code: "unauthorized" } });
    }
    // The same on an upgrade.
    const ws = new WebSocket(`${nodes.a.url.replace("http", "ws")}/v1/sandboxes/${ON_A}/echo`, {
      headers: { authorization: "Bearer user-key", [NODE_AUTH_HEADERS.from]: "b" },
    });
    const status = await new Promise<number>((resolve) =>
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode!)),
    );
    expect(status).toBe(401);
    // A genuine one is answered.
    const genuine = await request(nodes.a.url, { path, headers: signed(path) });
    expect(json(genuine).node).toBe("a");
  });
});
