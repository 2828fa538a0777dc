// The built CLI's `screenshot` as a user runs it: a PNG on stdout, and a refusal to write one to a terminal.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let server: TestServer;
let sandbox: SandboxBody;

/** Runs a command line with the test server's URL and key in its environment; stdout as bytes. */
function run(argv: string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

beforeAll(async () => {
  server = await startTestServer();
  const api = apiClient(server);
  sandbox = await api.createSandbox({ template: "desktop", desktop: { width: 640, height: 480 }, timeoutMs: 600_000 });
  await waitFor(
    async () => ((await api.get(`/v1/sandboxes/${sandbox.id}/desktop`)).status === 200 ? true : undefined),
    120_000,
    "the desktop",
  );
}, 180_000);

afterAll(async () => {
  if (sandbox) await apiClient(server).del(`/v1/sandboxes/${sandbox.id}`);
  await server?.close();
});

describe("sandpit screenshot", () => {
  it("writes the screen's PNG to stdout and exits 0", async () => {
    const done = await run([process.execPath, cliEntry, "screenshot", sandbox.id]);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect([done.stdout.readUInt32BE(16), done.stdout.readUInt32BE(20)]).toEqual([640, 480]);
    const region = await run([process.execPath, cliEntry, "screenshot", sandbox.id, "--region", "0,0,100,50"]);
    expect([region.stdout.readUInt32BE(16), region.stdout.readUInt32BE(20)]).toEqual([100, 50]);
  }, 60_000);

  it("refuses to write the PNG to a terminal", async () => {
    // util-linux `script` gives the CLI a pseudo-terminal as stdout.
    const command = [process.execPath, cliEntry, "screenshot", sandbox.id].map((a) => `'${a}'`).join(" ");
    const done = await run(["script", "-qec", command, "/dev/null"]);
    expect(done.code).not.toBe(0);
    expect(done.stdout.toString()).toContain("stdout is a terminal");
    expect(done.stdout.includes(PNG_SIGNATURE.subarray(1, 4))).toBe(false);
  }, 60_000);
});
