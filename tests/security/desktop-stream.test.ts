// Attacks on the desktop live view: another organisation's calls, public ports, and a stream token carried
// to another sandbox.
import type { DesktopStream } from "@sandpit/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { startDisplay } from "../helpers/desktop-display.js";
import { upgradeStatus } from "../helpers/live-view.js";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let other: ReturnType<typeof apiClient>;
type WithToken = SandboxBody & { trafficToken: string };
let desktop: WithToken;
let neighbour: WithToken;

useTestServer((s, a) => {
  server = s;
  api = a;
});

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  other = apiClient(server, (await createApiKey({ dataDir: server.dataDir, org: "desktop-stream-other" })).key);
  // Public ports, 6080 among them: what would open the port to anyone if the live view did not guard it.
  desktop = (await api.createSandbox({
    template: "desktop",
    timeoutMs: 900_000,
    ports: [6080],
    publicPorts: true,
  })) as WithToken;
  neighbour = (await api.createSandbox({ template: "base", timeoutMs: 900_000, ports: [6080] })) as WithToken;
  await startDisplay(api, desktop.id);
  await api.exec(neighbour.id, { command: "python3 -m http.server 6080 --bind 0.0.0.0", background: true });
});

afterAll(async () => {
  for (const s of [desktop, neighbour]) if (s) await api.del(`/v1/sandboxes/${s.id}`);
});

const streamPath = (id: string) => `/v1/sandboxes/${id}/desktop/stream`;
const portUrl = (id: string, token?: string, file = "vnc.html") =>
  `${server.url}/v1/sandboxes/${id}/ports/6080${token === undefined ? "" : `/sandpit_token/${token}`}/${file}`;

describe("desktop live view: attacks", () => {
  it("another organisation can neither start, see nor stop a stream on your sandbox", async () => {
    expect((await other.post(streamPath(desktop.id), {})).status).toBe(404);
    expect((await api.get(streamPath(desktop.id))).status).toBe(404);
    const started = await api.post<DesktopStream>(streamPath(desktop.id), {});
    expect(started.status).toBe(200);
    expect((await other.get(streamPath(desktop.id))).status).toBe(404);
    expect((await other.del(streamPath(desktop.id))).status).toBe(404);
    expect((await other.post(streamPath(desktop.id), { viewOnly: true })).status).toBe(404);
    // Untouched: the same stream, still open with its token.
    const now = await api.get<DesktopStream>(streamPath(desktop.id));
    expect(now.body.token).toBe(started.body.token);
    expect((await fetch(portUrl(desktop.id, started.body.token))).status).toBe(200);
  });

  it("public ports do not open a live view: without its token the page and the WebSocket are refused", async () => {
    expect((await fetch(portUrl(desktop.id))).status).toBe(401);
    expect(await upgradeStatus(portUrl(desktop.id, undefined, "websockify"))).toBe(401);
    expect((await fetch(portUrl(desktop.id, desktop.trafficToken))).status).toBe(403);
  });

  it("a stream token opens nothing of another sandbox, not even its port 6080", async () => {
    const { token } = (await api.get<DesktopStream>(streamPath(desktop.id))).body;
    // The neighbour's own port answers with its traffic token (its web server has no vnc.html: 404).
    await waitFor(
      async () => ((await fetch(portUrl(neighbour.id, neighbour.trafficToken))).status === 404 ? true : undefined),
      20_000,
      "the neighbour's web server",
    );
    expect((await fetch(portUrl(neighbour.id, token))).status).toBe(403);
    expect(await upgradeStatus(portUrl(neighbour.id, token, "websockify"))).toBe(403);
  });

  it("rejects a malformed start request, naming the field", async () => {
    const res = await api.post<{ error: { code: string; details: { fields: { field: string }[] } } }>(
      streamPath(desktop.id),
      { viewOnly: "yes" },
    );
    expect(res.status).toBe(400);
    expect(res.body.error.details.fields[0]!.field).toBe("viewOnly");
    const unknown = await api.post<{ error: { code: string } }>(streamPath(desktop.id), { password: "x" });
    expect(unknown.status).toBe(400);
  });
});
