import { EventEmitter } from "node:events";
import pino from "pino";
import { describe, expect, it, vi } from "vitest";
import type { WebSocket } from "ws";
import type { OrgRecord } from "../domain/index.js";
import type { ExecService } from "./exec-service.js";
import type { SandboxService } from "./sandbox-service.js";
import { TerminalService } from "./terminal-service.js";

const org = { id: "org_1", name: "default" } as OrgRecord;

describe("TerminalService.attach", () => {
  it("keeps what a client sends before the terminal is looked up, in order", async () => {
    const written: string[] = [];
    let lookUp: () => void = () => {};
    let slowLookUps = false;
    const agent = {
      stat: async () => undefined,
      writeStdin: async (_id: string, data: Uint8Array) => {
        written.push(Buffer.from(data).toString());
      },
      // The terminal's output: none, until the socket goes away.
      commandEvents: async function* (_id: string, opts: { signal: AbortSignal }) {
        await new Promise((resolve) => opts.signal.addEventListener("abort", resolve));
        yield* [];
      },
    };
    const sandboxes = {
      requireRunning: async () => ({ agent }),
      // The look-up `attach` makes (a database query in a cluster) answers only when the test says so.
      get: () => (slowLookUps ? new Promise<void>((resolve) => (lookUp = resolve)) : Promise.resolve()),
      touch: () => undefined,
    } as unknown as SandboxService;
    const exec = { startOnTerminal: async () => ({ commandId: "cmd_1", pid: 7 }) } as unknown as ExecService;
    const terminals = new TerminalService(sandboxes, exec, pino({ level: "silent" }));
    const { terminalId } = await terminals.create(org, "sbx_1", {});

    slowLookUps = true;
    const socket = Object.assign(new EventEmitter(), { send: () => undefined, close: () => undefined });
    const attached = terminals.attach(org, "sbx_1", terminalId, socket as unknown as WebSocket);
    // Typed the moment the socket opened, while the look-up is still out.
    socket.emit("message", Buffer.from("echo one\r"), true);
    socket.emit("message", Buffer.from(JSON.stringify({ type: "input", data: "echo two\r" })), false);
    lookUp();
    socket.emit("message", Buffer.from("echo three\r"), true);
    await vi.waitFor(() => expect(written).toHaveLength(3), { timeout: 2000 }).catch(() => undefined);
    expect(written).toEqual(["echo one\r", "echo two\r", "echo three\r"]);
    socket.emit("close");
    await attached;
  });
});
