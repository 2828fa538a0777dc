// A retry never runs anything twice: a loopback proxy in front of the real server lets the server run a
// request and then loses its answer (503), so the SDK retries; the Idempotency-Key it generated once for
// the call makes the server answer the retry with the first run's result.
import { ApiClient, type ConnectionOptions, resolveConfig, Sandbox, ServerError, Snapshots } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LossyProxy, startLossyProxy } from "../helpers/lossy-proxy.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

/** Loses the first answer of each route listed in `once`. */
const lostOnce = new Set<string>();
let proxy: LossyProxy;
let direct: ConnectionOptions;
let throughProxy: ConnectionOptions;
let sandbox: Sandbox;

beforeAll(async () => {
  proxy = await startLossyProxy(server.url, (method, path) => {
    const route = `${method} ${path}`;
    if (!lostOnce.has(route)) return false;
    lostOnce.delete(route);
    return true;
  });
  direct = { apiUrl: server.url, apiKey: server.apiKey };
  throughProxy = { apiUrl: proxy.url, apiKey: server.apiKey };
  sandbox = await Sandbox.create({ timeoutMs: 600_000 }, direct);
});

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
  await proxy?.close();
});

const loseNextAnswer = (method: string, path: string) => lostOnce.add(`${method} /v1${path}`);
const lines = async (file: string) => (await sandbox.commands.run(`cat ${file}`)).stdout.split("\n").filter(Boolean);

describe("retries after a lost answer", () => {
  it("starts a background command once, with one key on both attempts", async () => {
    const viaProxy = await Sandbox.get(sandbox.id, throughProxy);
    loseNextAnswer("POST", `/sandboxes/${sandbox.id}/exec`);
    const handle = await viaProxy.commands.run("echo ran >> /tmp/background-count", { background: true });
    expect((await handle.wait()).exitCode).toBe(0);
    expect(await lines("/tmp/background-count")).toEqual(["ran"]);
    const attempts = proxy.forwarded.filter((f) => f.route === `POST /v1/sandboxes/${sandbox.id}/exec`);
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(attempts[1]!.idempotencyKey).toBe(attempts[0]!.idempotencyKey);
  });

  it("runs it twice without a key: the proxy really loses answers of requests that ran (control)", async () => {
    const withoutKey: ConnectionOptions = {
      ...throughProxy,
      fetch: (input, init) => {
        const headers = { ...(init?.headers as Record<string, string>) };
        delete headers["idempotency-key"];
        return fetch(input, { ...init, headers });
      },
    };
    const api = new ApiClient(resolveConfig(withoutKey), { sleep: async () => {} });
    loseNextAnswer("POST", `/sandboxes/${sandbox.id}/exec`);
    await api.empty(`/sandboxes/${sandbox.id}/exec`, {
      method: "POST",
      json: { command: "echo ran >> /tmp/unkeyed-count" },
    });
    expect(await lines("/tmp/unkeyed-count")).toEqual(["ran", "ran"]);
  });

  it("takes one snapshot when the snapshot's answer is lost", async () => {
    const viaProxy = await Sandbox.get(sandbox.id, throughProxy);
    loseNextAnswer("POST", `/sandboxes/${sandbox.id}/snapshots`);
    const snapshot = await viaProxy.snapshot({ name: "lost-answer" });
    const mine = (await Snapshots.list(direct)).filter((s) => s.sourceSandboxId === sandbox.id);
    expect(mine.map((s) => s.id)).toEqual([snapshot.id]);
    await Snapshots.delete(snapshot.id, direct);
  });

  it("forks once when the fork's answer is lost", async () => {
    const viaProxy = await Sandbox.get(sandbox.id, throughProxy);
    loseNextAnswer("POST", `/sandboxes/${sandbox.id}/fork`);
    const children = await viaProxy.fork(1);
    try {
      expect(children).toHaveLength(1);
      const running = (await Sandbox.list({}, direct)).map((s) => s.id).sort();
      expect(running).toEqual([sandbox.id, children[0]!.id].sort());
    } finally {
      for (const child of children) await Sandbox.kill(child.id, direct);
    }
  });

  it("does not resend a streamed command whose answer was lost: it ran once and the call fails", async () => {
    const viaProxy = await Sandbox.get(sandbox.id, throughProxy);
    loseNextAnswer("POST", `/sandboxes/${sandbox.id}/exec`);
    const error = await viaProxy.commands.run("echo ran >> /tmp/foreground-count").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServerError);
    expect(await lines("/tmp/foreground-count")).toEqual(["ran"]);
  });
});
