import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type apiClient, type ErrorBody, waitFor } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer((s, a) => {
  server = s;
  api = a;
});

interface TerminalBody {
  terminalId: string;
  pid: number;
  cols: number;
  rows: number;
  command: string[];
  attached: boolean;
}

/** A WebSocket client of a terminal that collects its output and control messages. */
async function connect(sandboxId: string, terminalId: string, key = server.apiKey) {
  const url = `${server.url.replace("http", "ws")}/v1/sandboxes/${sandboxId}/terminals/${terminalId}`;
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` } });
  const session = {
    ws,
    output: "",
    messages: [] as Record<string, unknown>[],
    closed: new Promise<number>((resolve) => ws.on("close", (code) => resolve(code))),
    type: (text: string) => ws.send(Buffer.from(text), { binary: true }),
    control: (m: Record<string, unknown>) => ws.send(JSON.stringify(m)),
    /** Waits until the output holds `pattern` after the given position. */
    until: (pattern: RegExp, from = 0) =>
      waitFor(async () => (pattern.test(session.output.slice(from)) ? true : undefined), 15_000, `output ${pattern}`),
  };
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    if (isBinary) session.output += data.toString("utf8");
    else session.messages.push(JSON.parse(data.toString("utf8")) as Record<string, unknown>);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return session;
}

describe("terminals", () => {
  it("runs an interactive bash: typed input echoes, resize reaches the program, Ctrl-C and the exit code", async () => {
    const sbx = await api.createSandbox();
    const created = await api.post<TerminalBody>(`/v1/sandboxes/${sbx.id}/terminals`, { cols: 100, rows: 30 });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ cols: 100, rows: 30, command: ["/bin/bash", "-l"] });
    const t = await connect(sbx.id, created.body.terminalId);

    t.type("echo hi-$((6*7))\r");
    await t.until(/hi-42/);
    // The terminal echoes what was typed, as a real tty does.
    expect(t.output).toContain("echo hi-$((6*7))");

    let mark = t.output.length;
    t.type("tput cols; stty size\r");
    await t.until(/100\r?\n30 100/, mark);

    t.control({ type: "resize", cols: 132, rows: 40 });
    await waitFor(
      async () =>
        (await api.get<TerminalBody>(`/v1/sandboxes/${sbx.id}/terminals/${created.body.terminalId}`)).body.cols === 132
          ? true
          : undefined,
      5000,
      "the resize",
    );
    mark = t.output.length;
    t.type("tput cols; stty size\r");
    await t.until(/132\r?\n40 132/, mark);

    // Ctrl-C interrupts the foreground program, not the shell.
    mark = t.output.length;
    t.type("sleep 100\r");
    await new Promise((r) => setTimeout(r, 500));
    t.type("\x03");
    t.type("echo after-$((1+1))\r");
    await t.until(/after-2/, mark);

    t.type("exit 3\r");
    expect(await t.closed).toBe(1000);
    expect(t.messages).toContainEqual({ type: "exit", exitCode: 3 });
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });

  it("keeps running while no client is attached, and a reconnecting client gets what it missed", async () => {
    const sbx = await api.createSandbox();
    const { body } = await api.post<TerminalBody>(`/v1/sandboxes/${sbx.id}/terminals`, {
      command: ["/bin/sh"],
      cols: 80,
      rows: 24,
    });
    const first = await connect(sbx.id, body.terminalId);
    first.type("echo first-$((2*3))\r");
    await first.until(/first-6/);
    first.ws.close();
    await first.closed;

    // Typed while nobody watches (HTTP input), then seen by the next client.
    expect(
      (await api.post(`/v1/sandboxes/${sbx.id}/terminals/${body.terminalId}/input`, { data: "echo missed-$((3*3))\r" }))
        .status,
    ).toBe(204);
    await new Promise((r) => setTimeout(r, 500));
    const second = await connect(sbx.id, body.terminalId);
    await second.until(/missed-9/);
    expect(second.output).not.toContain("first-6");

    const listed = await api.get<{ terminals: TerminalBody[] }>(`/v1/sandboxes/${sbx.id}/terminals`);
    expect(listed.body.terminals).toEqual([expect.objectContaining({ terminalId: body.terminalId, attached: true })]);
    expect((await api.del(`/v1/sandboxes/${sbx.id}/terminals/${body.terminalId}`)).status).toBe(204);
    expect(await second.closed).toBe(1000);
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });

  it("refuses other organisations and unknown terminals before upgrading", async () => {
    const sbx = await api.createSandbox();
    const { body } = await api.post<TerminalBody>(`/v1/sandboxes/${sbx.id}/terminals`, {});
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "terminal-intruder" });
    for (const [key, id, expected] of [
      [other.key, body.terminalId, 404],
      ["sp_wrong", body.terminalId, 401],
      [server.apiKey, "cmd_nope", 404],
    ] as const) {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(`${server.url.replace("http", "ws")}/v1/sandboxes/${sbx.id}/terminals/${id}`, {
          headers: { authorization: `Bearer ${key}` },
        });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => resolve(101));
        ws.on("error", () => undefined);
      });
      expect(status).toBe(expected);
    }
    const bad = await api.post<ErrorBody>(`/v1/sandboxes/${sbx.id}/terminals`, { cols: 0 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details?.fields?.[0]?.field).toBe("cols");
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });
});
