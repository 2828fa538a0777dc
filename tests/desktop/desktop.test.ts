// Desktops through the native API: a real sandbox of the desktop template, its display (Xvfb :0 with Xfce)
// started by the in-sandbox desktop server (packages/agent/desktop) as the sandbox's user.
import type { DesktopPoint, DesktopState, DesktopWindow } from "@sandpit/contract";
import { beforeAll, describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody & { desktop: { width: number; height: number; dpi: number } | null };

useTestServer((_, a) => {
  api = a;
});

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
// Xfce's first start under gVisor on a loaded host.
const DESKTOP_TIMEOUT_MS = 120_000;

beforeAll(async () => {
  sandbox = (await api.createSandbox({
    template: "desktop",
    desktop: { width: 800, height: 600 },
    timeoutMs: 1_800_000,
  })) as typeof sandbox;
}, DESKTOP_TIMEOUT_MS);

const path = (rest = "", id = sandbox.id) => `/v1/sandboxes/${id}/desktop${rest}`;

/** A screenshot's PNG and its size from the IHDR chunk. */
async function screenshot(query = "", id = sandbox.id) {
  const res = await api.get<Buffer>(path(`/screenshot${query}`, id));
  if (res.status !== 200) throw new Error(`screenshot failed: ${res.status} ${JSON.stringify(res.body)}`);
  expect(res.headers.get("content-type")).toBe("image/png");
  const png = res.body;
  expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
  return { png, width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

async function windows(id = sandbox.id): Promise<DesktopWindow[]> {
  const res = await api.get<{ windows: DesktopWindow[] }>(path("/windows", id));
  expect(res.status).toBe(200);
  return res.body.windows;
}

const windowOf = (className: string, id = sandbox.id) =>
  waitFor(async () => (await windows(id)).find((w) => w.className === className), 60_000, `a ${className} window`);

async function mouse(body: Record<string, unknown>) {
  const res = await api.post<DesktopPoint>(path("/mouse"), body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function keyboard(body: Record<string, unknown>) {
  const res = await api.post(path("/keyboard"), body);
  expect(res.status, JSON.stringify(res.body)).toBe(204);
}

async function launch(body: Record<string, unknown>) {
  const res = await api.post<{ pid: number }>(path("/launch"), body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** A file of the sandbox once it exists with content. */
const fileText = (file: string, id = sandbox.id) =>
  waitFor(
    async () => {
      const read = await api.exec(id, { command: `cat ${file} 2>/dev/null` });
      return read.stdout === "" ? undefined : read.stdout;
    },
    30_000,
    file,
  );

/** Types a shell line into the focused terminal, the line cleared first. */
async function terminalLine(terminal: DesktopWindow, line: string) {
  await mouse({ action: "click", x: terminal.x + Math.floor(terminal.width / 2), y: terminal.y + 100 });
  await keyboard({ action: "type", text: `${line}\n` });
}

function expectField(res: { status: number; body: unknown }, field: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  const body = res.body as ErrorBody;
  expect(body.error.code).toBe("validation_failed");
  expect(body.error.details?.fields?.map((f) => f.field)).toContain(field);
  expect(body.error.message).toContain(field);
}

describe("desktop sandboxes", () => {
  it(
    "has a display of the requested size: the state, full screenshots, regions and scaled ones",
    async () => {
      expect(sandbox.desktop).toEqual({ width: 800, height: 600, dpi: 96 });
      expect(sandbox.envKeys).toContain("DISPLAY");
      const state = await waitFor(
        async () => {
          const res = await api.get<DesktopState>(path());
          return res.status === 200 ? res.body : undefined;
        },
        DESKTOP_TIMEOUT_MS,
        "the desktop",
      );
      expect(state).toMatchObject({ display: ":0", width: 800, height: 600, dpi: 96 });
      expect(await screenshot()).toMatchObject({ width: 800, height: 600 });
      expect(await screenshot("?x=10&y=20&width=100&height=50")).toMatchObject({ width: 100, height: 50 });
      expect(await screenshot("?scale=0.5")).toMatchObject({ width: 400, height: 300 });
      // Commands of the sandbox find the display.
      expect((await api.exec(sandbox.id, { command: "echo $DISPLAY; xdpyinfo | grep dimensions" })).stdout).toMatch(
        /^:0\n.*800x600 pixels/,
      );
      const moved = await mouse({ action: "move", x: 123, y: 45 });
      expect(moved).toEqual({ x: 123, y: 45 });
      expect((await api.get<DesktopState>(path())).body.cursor).toEqual({ x: 123, y: 45 });
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "closes a dialog with a click on its button: the screen changes and the window leaves the list",
    async () => {
      await launch({ command: 'xmessage -center -buttons "Press me" "Press me"' });
      const dialog = await windowOf("Xmessage");
      expect(dialog.width).toBeGreaterThan(0);
      const before = await screenshot();
      // xmessage puts its button at the bottom left, under the message.
      await mouse({ action: "click", x: dialog.x + 20, y: dialog.y + dialog.height - 12 });
      await waitFor(
        async () => ((await windows()).some((w) => w.className === "Xmessage") ? undefined : true),
        30_000,
        "the dialog to close",
      );
      expect((await screenshot()).png.equals(before.png)).toBe(false);
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "types non-ASCII text and key combos into a terminal",
    async () => {
      await launch({ application: "xfce4-terminal" });
      const terminal = await windowOf("Xfce4-terminal");
      await waitFor(async () => ((await windows()).find((w) => w.id === terminal.id)?.focused ? true : undefined));
      // The shell is ready once a line typed into it runs.
      await waitFor(
        async () => {
          await terminalLine(terminal, "touch /tmp/ready");
          return (await api.exec(sandbox.id, { command: "test -f /tmp/ready" })).exitCode === 0 ? true : undefined;
        },
        60_000,
        "the terminal's shell",
      );
      const region = `?x=${terminal.x}&y=${terminal.y}&width=${terminal.width}&height=${terminal.height}`;
      const before = await screenshot(region);
      await terminalLine(terminal, "printf '%s' 'héllo wörld ✓' > /tmp/typed.txt");
      expect(await fileText("/tmp/typed.txt")).toBe("héllo wörld ✓");
      // The typed line shows in the terminal: its pixels changed.
      expect((await screenshot(region)).png.equals(before.png)).toBe(false);

      // ctrl+u clears what was typed on the line: only the second command runs.
      await keyboard({ action: "type", text: "echo wrong" });
      await keyboard({ action: "press", keys: "ctrl+u" });
      await keyboard({ action: "type", text: "echo right > /tmp/combo.txt" });
      await keyboard({ action: "press", keys: ["Return"] });
      expect(await fileText("/tmp/combo.txt")).toBe("right\n");
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "launches Chromium, lists its window and focuses a window on request",
    async () => {
      const { pid } = await launch({ application: "chromium", uri: "about:blank" });
      expect(pid).toBeGreaterThan(0);
      const browser = await windowOf("Chromium");
      expect(browser.width).toBeGreaterThan(100);
      const terminal = (await windows()).find((w) => w.className === "Xfce4-terminal")!;
      const focus = await api.post(path(`/windows/${terminal.id}/focus`));
      expect(focus.status).toBe(204);
      await waitFor(async () => ((await windows()).find((w) => w.id === terminal.id)?.focused ? true : undefined));
      expect((await api.post<ErrorBody>(path("/windows/1/focus"))).status).toBe(404);
      expect((await api.post<ErrorBody>(path("/launch"), { application: "no-such-app" })).status).toBe(404);
    },
    DESKTOP_TIMEOUT_MS,
  );

  it("answers 400 naming the field for bad input", async () => {
    expectField(await api.post(path("/mouse"), { action: "click", button: "fourth" }), "button");
    expectField(await api.post(path("/mouse"), { action: "move", x: -1, y: 10 }), "x");
    expectField(await api.post(path("/mouse"), { action: "move", y: 10 }), "x");
    expectField(await api.post(path("/mouse"), { action: "teleport" }), "action");
    // Within what the API takes, outside this screen (800×600): the desktop server refuses it.
    expectField(await api.post(path("/mouse"), { action: "move", x: 900, y: 10 }), "x");
    expectField(await api.post(path("/mouse"), { action: "scroll", amount: 0 }), "amount");
    expectField(await api.get(path("/screenshot?x=700&width=200")), "width");
    expectField(await api.get(path("/screenshot?x=-5")), "x");
    expectField(await api.get(path("/screenshot?scale=2")), "scale");
    expectField(await api.post(path("/keyboard"), { action: "press", keys: "ctrl+nosuchkey" }), "keys.0");
    expectField(await api.post(path("/keyboard"), { action: "type", text: "" }), "text");
    expectField(await api.post(path("/launch"), {}), "application");
    expectField(await api.post(path("/launch"), { application: "../etc/passwd" }), "application");
  });

  it(
    "keeps the display and its windows across pause and resume",
    async () => {
      const before = (await windows()).map((w) => w.className).sort();
      expect(before).toContain("Xfce4-terminal");
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/pause`)).body.status).toBe("paused");
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/resume`)).body.status).toBe("running");
      expect((await windows()).map((w) => w.className).sort()).toEqual(before);
      expect(await screenshot()).toMatchObject({ width: 800, height: 600 });
      expect((await mouse({ action: "move", x: 5, y: 6 })).x).toBe(5);
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "gives a snapshot's child a working desktop with the source's windows",
    async () => {
      const snap = await api.post<{ id: string; status: string }>(`/v1/sandboxes/${sandbox.id}/snapshots`, {});
      expect(snap.status).toBe(201);
      await waitFor(async () =>
        (await api.get<{ status: string }>(`/v1/snapshots/${snap.body.id}`)).body.status === "ready" ? true : undefined,
      );
      const child = (await api.createSandbox({ snapshotId: snap.body.id })) as typeof sandbox;
      try {
        expect(child.desktop).toEqual({ width: 800, height: 600, dpi: 96 });
        expect((await windows(child.id)).some((w) => w.className === "Xfce4-terminal")).toBe(true);
        expect(await screenshot("", child.id)).toMatchObject({ width: 800, height: 600 });
      } finally {
        await api.del(`/v1/sandboxes/${child.id}`);
        await api.del(`/v1/snapshots/${snap.body.id}`);
      }
    },
    DESKTOP_TIMEOUT_MS,
  );

  it("refuses a desktop on a template without X, and desktop calls on a sandbox without one", async () => {
    const refused = await api.post<ErrorBody>("/v1/sandboxes", { template: "base", desktop: {} });
    expectField(refused, "desktop");
    const plain = await api.createSandbox({ template: "base" });
    try {
      const res = await api.get<ErrorBody>(`/v1/sandboxes/${plain.id}/desktop/screenshot`);
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe("desktop_unavailable");
    } finally {
      await api.del(`/v1/sandboxes/${plain.id}`);
    }
  });
});
