// Attacks on the native desktop API: another organisation's calls on your desktop sandbox.
import { beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let other: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;

useTestServer((s, a) => {
  server = s;
  api = a;
});

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  other = apiClient(server, (await createApiKey({ dataDir: server.dataDir, org: "desktop-other" })).key);
  sandbox = await api.createSandbox({ template: "desktop", timeoutMs: 600_000 });
}, 120_000);

describe("the desktop API across organisations", () => {
  it("answers 404 to another organisation for every desktop call on your sandbox, and does nothing", async () => {
    const path = `/v1/sandboxes/${sandbox.id}/desktop`;
    const calls = [
      () => other.get(path),
      () => other.get(`${path}/screenshot`),
      () => other.post(`${path}/mouse`, { action: "move", x: 7, y: 9 }),
      () => other.post(`${path}/keyboard`, { action: "type", text: "x" }),
      () => other.get(`${path}/windows`),
      () => other.post(`${path}/windows/1/focus`),
      () => other.post(`${path}/launch`, { command: "touch /tmp/owned" }),
    ];
    for (const call of calls) {
      const res = await call();
      expect(res.status, JSON.stringify(res.body)).toBe(404);
      expect((res.body as unknown as ErrorBody).error.code).toBe("sandbox_not_found");
    }
    // Nothing reached the sandbox: the pointer did not move there and no file was written.
    const owner = await api.get<{ cursor: { x: number; y: number } }>(path);
    expect(owner.status).toBe(200);
    expect(owner.body.cursor).not.toEqual({ x: 7, y: 9 });
    expect((await api.exec(sandbox.id, { command: "test -e /tmp/owned" })).exitCode).toBe(1);
  }, 120_000);
});
