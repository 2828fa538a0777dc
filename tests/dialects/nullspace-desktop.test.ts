// Nullspace's desktop: the create request's `desktop` object and its desktop routes, over a real sandbox of
// the desktop template (Xvfb :0 with Xfce, started by the in-sandbox desktop server).
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface NullspaceError {
  error: { code: string; message: string; status: number; request_id: string; fields?: { field: string }[] };
}
interface NullspaceSandbox {
  id: string;
  template: string;
  desktop?: { width: number; height: number; dpi: number };
  config: { memory_mb: number };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
// Xfce's first start under gVisor on a loaded host.
const DESKTOP_TIMEOUT_MS = 180_000;

let server: TestServer;
let sandbox: NullspaceSandbox;

/** A request as Nullspace's clients send it: Bearer key, an Idempotency-Key on POSTs, JSON bodies. */
async function nullspace<T>(method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { Authorization: `Bearer ${server.apiKey}` };
  if (method === "POST") headers["Idempotency-Key"] = randomUUID();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`${server.url}/nullspace${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const json = res.headers.get("content-type")?.startsWith("application/json");
  return { status: res.status, headers: res.headers, body: (json ? JSON.parse(bytes.toString()) : bytes) as T };
}

const desktop = (rest = "") => `/v1/sandboxes/${sandbox.id}/desktop${rest}`;

function expectError(res: { status: number; body: unknown }, status: number, code: string, field?: string) {
  const body = res.body as NullspaceError;
  expect(res.status, JSON.stringify(body)).toBe(status);
  expect(body.error.code).toBe(code);
  expect(body.error.status).toBe(status);
  expect(body.error.request_id).toMatch(/\S/);
  if (field === undefined) return;
  expect(body.error.fields?.map((f) => f.field)).toContain(field);
  expect(body.error.message).toContain(field);
}

beforeAll(async () => {
  server = await startTestServer();
  // No template named: a desktop asked for makes it the desktop template. No memory_mb: Nullspace's default
  // (256 MB) is enough for the desktop, a terminal and a dialog.
  const res = await nullspace<NullspaceSandbox>("POST", "/v1/sandboxes", {
    desktop: { width: 800, height: 600 },
    timeout_ms: 1_800_000,
  });
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  sandbox = res.body;
}, DESKTOP_TIMEOUT_MS);

afterAll(async () => {
  if (sandbox) await nullspace("DELETE", `/v1/sandboxes/${sandbox.id}`);
  await server?.close();
});

describe("Nullspace desktop", () => {
  it(
    "creates a desktop of the asked size: shown on the sandbox, screenshots of that size, the cursor where moved",
    async () => {
      expect(sandbox.template).toBe("desktop");
      expect(sandbox.config.memory_mb).toBe(256);
      expect(sandbox.desktop).toEqual({ width: 800, height: 600, dpi: 96 });
      expect((await nullspace<NullspaceSandbox>("GET", `/v1/sandboxes/${sandbox.id}`)).body.desktop).toEqual(
        sandbox.desktop,
      );

      const shot = await nullspace<Buffer>("GET", desktop("/screenshot"));
      expect(shot.status, String(shot.body)).toBe(200);
      expect(shot.headers.get("content-type")).toBe("image/png");
      expect(shot.body.subarray(0, 8)).toEqual(PNG_SIGNATURE);
      expect(shot.body.toString("latin1", 12, 16)).toBe("IHDR");
      expect([shot.body.readUInt32BE(16), shot.body.readUInt32BE(20)]).toEqual([800, 600]);
      const region = await nullspace<Buffer>("GET", desktop("/screenshot?x=100&y=50&width=200&height=100&scale=0.5"));
      expect([region.body.readUInt32BE(16), region.body.readUInt32BE(20)]).toEqual([100, 50]);

      const moved = await nullspace<{ x: number; y: number }>("POST", desktop("/mouse"), {
        action: "move",
        x: 123,
        y: 456,
      });
      expect(moved.status, JSON.stringify(moved.body)).toBe(200);
      expect(moved.body).toEqual({ x: 123, y: 456 });
      const state = await nullspace<Record<string, unknown>>("GET", desktop());
      expect(state.status).toBe(200);
      expect(state.body).toMatchObject({ width: 800, height: 600, dpi: 96, cursor: { x: 123, y: 456 } });
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "types, launches and lists windows in snake_case; the live view starts, shows and stops",
    async () => {
      const typed = await nullspace("POST", desktop("/keyboard"), { action: "press", keys: "Escape" });
      expect(typed.status, JSON.stringify(typed.body)).toBe(204);
      const launched = await nullspace<{ pid: number }>("POST", desktop("/launch"), { application: "xfce4-terminal" });
      expect(launched.status, JSON.stringify(launched.body)).toBe(200);
      expect(launched.body.pid).toBeGreaterThan(0);
      const windows = await nullspace<{ windows: Record<string, unknown>[] }>("GET", desktop("/windows"));
      expect(windows.status).toBe(200);
      for (const w of windows.body.windows) {
        expect(Object.keys(w)).toEqual(expect.arrayContaining(["class_name", "instance_name", "title", "focused"]));
        expect(w).not.toHaveProperty("className");
      }
      // Of the terminal and a dialog, the one without the focus gets it (POST …/windows/{window_id}/focus).
      await nullspace("POST", desktop("/launch"), { command: "xmessage -center focus-me" });
      type Listed = { id: number; class_name: string; focused: boolean };
      const listed = async () => (await nullspace<{ windows: Listed[] }>("GET", desktop("/windows"))).body.windows;
      const pair = await waitFor(
        async () => {
          const ours = (await listed()).filter((w) => /^(xfce4-terminal|xmessage)$/i.test(w.class_name));
          return ours.length === 2 ? ours : undefined;
        },
        60_000,
        "the terminal's and the dialog's windows",
      );
      const target = pair.find((w) => !w.focused) ?? pair[0]!;
      const focus = await nullspace("POST", desktop(`/windows/${target.id}/focus`));
      expect(focus.status, JSON.stringify(focus.body)).toBe(204);
      await waitFor(
        async () => ((await listed()).find((w) => w.id === target.id)?.focused ? true : undefined),
        30_000,
        "the window to have the focus",
      );

      const started = await nullspace<Record<string, unknown>>("POST", desktop("/stream"), { view_only: true });
      expect(started.status, JSON.stringify(started.body)).toBe(200);
      expect(started.body).toMatchObject({ view_only: true, expires_at: null });
      expect(started.body.stream_id).toEqual(expect.any(String));
      expect(started.body.url).toEqual(expect.stringContaining(String(started.body.token)));
      const shown = await nullspace<Record<string, unknown>>("GET", desktop("/stream"));
      expect(shown.body.stream_id).toBe(started.body.stream_id);
      expect((await nullspace("DELETE", desktop("/stream"))).status).toBe(204);
      expectError(await nullspace("GET", desktop("/stream")), 404, "not_found");
    },
    DESKTOP_TIMEOUT_MS,
  );

  it("refuses bad desktop objects and bodies in Nullspace's shape, naming the field", async () => {
    const create = (body: unknown) => nullspace("POST", "/v1/sandboxes", body);
    expectError(await create({ desktop: { width: 10, height: 600 } }), 400, "invalid_request", "desktop.width");
    expectError(await create({ desktop: { resolution: "800x600" } }), 400, "invalid_request", "desktop");
    // The base template has no X: the native API refuses such a desktop, and so does Nullspace.
    expectError(await create({ template: "base", desktop: { width: 800 } }), 400, "invalid_request", "desktop");

    const drag = { action: "drag", x: 10, y: 10, from_x: 5 };
    expectError(await nullspace("POST", desktop("/mouse"), drag), 400, "invalid_request", "from_y");
    const camel = { action: "move", x: 1, y: 1, fromX: 1 };
    expectError(await nullspace("POST", desktop("/mouse"), camel), 400, "invalid_request", "fromX");
    expectError(await nullspace("GET", desktop("/screenshot?scale=2")), 400, "invalid_request", "scale");
    expectError(await nullspace("POST", desktop("/stream"), { view_only: "yes" }), 400, "invalid_request", "view_only");
    expectError(await nullspace("POST", desktop("/windows/twelve/focus")), 400, "invalid_request", "window_id");
  });
});
