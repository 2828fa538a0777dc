import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { startPortApp, websocketEcho } from "../helpers/port-app.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;
let publicSandbox: SandboxBody;
const DOMAIN = "sandpit.test";

beforeAll(async () => {
  server = await startTestServer({ SANDPIT_DOMAIN: DOMAIN });
  api = apiClient(server);
  [sandbox, publicSandbox] = await Promise.all([
    api.createSandbox({ ports: [8000] }),
    api.createSandbox({ ports: [8000], publicPorts: true }),
  ]);
  await Promise.all([startPortApp(api, sandbox.id), startPortApp(api, publicSandbox.id)]);
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
    expect(await websocketEcho(server.url, path, { "X-Sandpit-Traffic-Token": sandbox.trafficToken }, "hi")).toBe(
      "echo:hi",
    );
    expect(await websocketEcho(server.url, `${path}?sandpit_token=${sandbox.trafficToken}`, {}, "q")).toBe("echo:q");
    expect(await websocketEcho(server.url, path, {}, "hi")).toBe("HTTP/1.1 401 Unauthorized");
    expect(await websocketEcho(server.url, path, { "X-Sandpit-Traffic-Token": "wrong" }, "hi")).toBe(
      "HTTP/1.1 403 Forbidden",
    );
  });

  it("needs no token for a sandbox created with publicPorts", async () => {
    const res = await fetch(`${server.url}/v1/sandboxes/${publicSandbox.id}/ports/8000/open`);
    expect(res.status).toBe(200);
    const ws = await websocketEcho(server.url, `/v1/sandboxes/${publicSandbox.id}/ports/8000/ws`, {}, "pub");
    expect(ws).toBe("echo:pub");
  });

  it("rejects too many ports", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", { ports: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
    expect(res.status).toBe(400);
    expect(res.body.error.details!.fields![0]!.field).toBe("ports");
  });
});
