import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "./api-client.js";
import { resolveConfig } from "./config.js";
import { SandpitError } from "./errors.js";
import { Terminals } from "./terminals.js";

// A server that answers the terminal's JSON but never the WebSocket upgrade, as a proxy without
// upgrade support does.
let server: Server;
const unanswered: Duplex[] = [];
let url: string;
const info = {
  terminalId: "cmd_aaaaaaaaaaaaaaaaaaaa",
  sandboxId: "sbx_aaaaaaaaaaaaaaaaaaaa",
  pid: 7,
  command: ["bash"],
  cols: 80,
  rows: 24,
  attached: false,
  exitCode: null,
};

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(info));
  });
  server.on("upgrade", (_req, socket: Duplex) => unanswered.push(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const socket of unanswered) socket.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("terminal connections", () => {
  it("give up on an upgrade that is never answered after the client's timeout", async () => {
    const client = new ApiClient(resolveConfig({ apiUrl: url, apiKey: "sk_test", timeoutMs: 2000 }, {}));
    const error = await new Terminals(info.sandboxId, client).connect(info.terminalId).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandpitError);
    expect((error as SandpitError).message).toMatch(/terminal connection failed: .*handshake has timed out/i);
  });
});
