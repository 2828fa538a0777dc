import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;
let publicSandbox: SandboxBody;
const DOMAIN = "sandpit.test";

/** An HTTP + WebSocket echo server, written for the sandbox's own Node.js (no packages needed). */
const appSource = `
const http = require("http"), crypto = require("crypto");
const srv = http.createServer((req, res) => {
  if (req.url.startsWith("/stream")) {
    res.writeHead(200, { "content-type": "text/plain" });
    let i = 0;
    const t = setInterval(() => { res.write("tick " + i + "\\n"); if (++i === 3) { clearInterval(t); res.end(); } }, 300);
    return;
  }
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ method: req.method, url: req.url, body, token: req.headers["x-sandpit-traffic-token"] || null }));
  });
});
srv.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n");
  sock.on("data", (buf) => {
    const len = buf[1] & 127, mask = buf.subarray(2, 6);
    const data = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
    sock.write(Buffer.concat([Buffer.from([0x81, data.length + 5]), Buffer.from("echo:"), data]));
  });
});
srv.listen(8000, "0.0.0.0");
`;

async function startApp(id: string) {
  await api.put(`/v1/sandboxes/${id}/files?path=/workspace/app.js`, appSource);
  await api.post(`/v1/sandboxes/${id}/exec`, { command: "node /workspace/app.js", background: true });
  await waitFor(
    async () => {
      const r = await api.exec(id, {
        command: "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/ || true",
      });
      return r.stdout === "200" ? true : undefined;
    },
    20_000,
    "the app to listen",
  );
}

/** A WebSocket round trip by hand: upgrade, one masked text frame out, one frame back. */
function websocketEcho(path: string, headers: Record<string, string>, message: string): Promise<string> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), "127.0.0.1", () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
      );
    });
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith("HTTP/1.1 101")) {
          socket.destroy();
          resolve(head.split("\r\n")[0]!);
          return;
        }
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        const payload = Buffer.from(message);
        const mask = Buffer.from([1, 2, 3, 4]);
        socket.write(
          Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]!)]),
        );
      }
      if (upgraded && buffer.length >= 2 && buffer.length >= 2 + (buffer[1]! & 127)) {
        socket.destroy();
        resolve(buffer.subarray(2, 2 + (buffer[1]! & 127)).toString());
      }
    });
    socket.on("error", reject);
  });
}

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_DOMAIN: DOMAIN });
  api = apiClient(server);
  [sandbox, publicSandbox] = await Promise.all([
    api.createSandbox({ ports: [8000] }),
    api.createSandbox({ ports: [8000], publicPorts: true }),
  ]);
  await Promise.all([startApp(sandbox.id), startApp(publicSandbox.id)]);
});

afterAll(async () => {
  await server?.close();
});

describe("exposed ports", () => {
  it("lists the port URLs", async () => {
    expect(sandbox.ports).toEqual([8000]);
    expect(sandbox.trafficToken).toMatch(/^[a-z2-7]{32}$/);
    const res = await api.get<{ ports: { port: number; url: string; hostUrl: string }[]; public: boolean }>(
      `/v1/sandboxes/${sandbox.id}/ports`,
    );
    expect(res.body.public).toBe(false);
    expect(res.body.ports).toEqual([
      {
        port: 8000,
        url: `${server.url}/v1/sandboxes/${sandbox.id}/ports/8000/`,
        hostUrl: `http://8000-${sandbox.id}.${DOMAIN}:${new URL(server.url).port}/`,
      },
    ]);
  });

  it("proxies HTTP by path with the traffic token in a header or the query, and refuses without it", async () => {
    const base = `${server.url}/v1/sandboxes/${sandbox.id}/ports/8000`;
    const withHeader = await fetch(`${base}/hello?x=1`, {
      method: "POST",
      headers: { "x-sandpit-traffic-token": sandbox.trafficToken },
      body: "payload",
    });
    expect(withHeader.status).toBe(200);
    expect(await withHeader.json()).toEqual({ method: "POST", url: "/hello?x=1", body: "payload", token: null });
    const withQuery = await fetch(`${base}/q?sandpit_token=${sandbox.trafficToken}&y=2`);
    expect(((await withQuery.json()) as { url: string }).url).toBe("/q?y=2");
    const missing = await fetch(`${base}/`);
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as ErrorBody).error.code).toBe("unauthorized");
    const wrong = await fetch(`${base}/`, { headers: { "x-sandpit-traffic-token": "nope" } });
    expect(wrong.status).toBe(403);
    const notExposed = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/ports/8001/`, {
      headers: { "x-sandpit-traffic-token": sandbox.trafficToken },
    });
    expect(notExposed.status).toBe(404);
  });

  it("streams responses as they are produced", async () => {
    const res = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/ports/8000/stream`, {
      headers: { "x-sandpit-traffic-token": sandbox.trafficToken },
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now();
    expect(new TextDecoder().decode(first.value)).toBe("tick 0\n");
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe("tick 1\ntick 2\n");
    expect(Date.now() - firstAt).toBeGreaterThan(400);
  });

  it("proxies by host name {port}-{id}.{domain}", async () => {
    const { port } = new URL(server.url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1", () => {
        socket.write(
          `GET /by-host HTTP/1.1\r\nHost: 8000-${sandbox.id}.${DOMAIN}\r\n` +
            `X-Sandpit-Traffic-Token: ${sandbox.trafficToken}\r\nConnection: close\r\n\r\n`,
        );
      });
      let data = "";
      socket.on("data", (c) => (data += c.toString()));
      socket.on("end", () => resolve({ status: Number(data.split(" ")[1]), body: data.split("\r\n\r\n")[1] ?? "" }));
      socket.on("error", reject);
    });
    expect(res.status).toBe(200);
    expect(res.body).toContain('"url":"/by-host"');
  });

  it("proxies WebSockets with the token and refuses them without", async () => {
    const path = `/v1/sandboxes/${sandbox.id}/ports/8000/ws`;
    expect(await websocketEcho(path, { "X-Sandpit-Traffic-Token": sandbox.trafficToken }, "hi")).toBe("echo:hi");
    expect(await websocketEcho(`${path}?sandpit_token=${sandbox.trafficToken}`, {}, "q")).toBe("echo:q");
    expect(await websocketEcho(path, {}, "hi")).toBe("HTTP/1.1 401 Unauthorized");
    expect(await websocketEcho(path, { "X-Sandpit-Traffic-Token": "wrong" }, "hi")).toBe("HTTP/1.1 403 Forbidden");
  });

  it("needs no token for a sandbox created with publicPorts", async () => {
    const res = await fetch(`${server.url}/v1/sandboxes/${publicSandbox.id}/ports/8000/open`);
    expect(res.status).toBe(200);
    const ws = await websocketEcho(`/v1/sandboxes/${publicSandbox.id}/ports/8000/ws`, {}, "pub");
    expect(ws).toBe("echo:pub");
  });

  it("rejects too many ports", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", { ports: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
    expect(res.status).toBe(400);
    expect(res.body.error.details!.fields![0]!.field).toBe("ports");
  });
});
