// sandbox.desktop of the SDK against a real server and one desktop sandbox.
import { type ConnectionOptions, Sandbox } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let connection: ConnectionOptions;
let sandbox: Sandbox;

beforeAll(async () => {
  server = await startTestServer();
  connection = { apiUrl: server.url, apiKey: server.apiKey };
  sandbox = await Sandbox.create(
    { template: "desktop", desktop: { width: 640, height: 480 }, timeoutMs: 600_000 },
    connection,
  );
}, 120_000);

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
  await server?.close();
});

describe("sandbox.desktop", () => {
  it("takes screenshots, moves and clicks the mouse, lists and launches windows", async () => {
    expect(await sandbox.desktop.screenSize()).toEqual({ width: 640, height: 480 });
    const png = await sandbox.desktop.screenshot({ scale: 0.5 });
    expect(Buffer.from(png.subarray(1, 4)).toString()).toBe("PNG");
    expect(Buffer.from(png).readUInt32BE(16)).toBe(320);
    expect(await sandbox.desktop.moveMouse(100, 120)).toEqual({ x: 100, y: 120 });
    expect(await sandbox.desktop.cursor()).toEqual({ x: 100, y: 120 });
    await sandbox.desktop.launch({ command: 'xmessage -center -default okay "from the SDK"' });
    const dialog = await waitFor(
      async () => (await sandbox.desktop.windows()).find((w) => w.className === "Xmessage"),
      60_000,
      "the dialog",
    );
    expect(dialog.title).toBe("xmessage");
    await sandbox.desktop.press("Return");
    // xmessage's default button takes Return: the dialog closes.
    await waitFor(async () => ((await sandbox.desktop.windows()).some((w) => w.id === dialog.id) ? undefined : true));
    expect(typeof sandbox.desktop.stream.start).toBe("function");
  }, 180_000);
});
