// Desktops through the native API: a real sandbox of the desktop template, its display (Xvfb :0 with Xfce)
// started by the in-sandbox desktop server (packages/agent/desktop) as the sandbox's user.
import type { DesktopPoint, DesktopState, DesktopWindow } from "@sandpit/contract";
import { beforeAll, describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { changedPixels, decodePng, type Rgba } from "../helpers/png.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;
let server: TestServer;
let sandbox: SandboxBody & { desktop: { width: number; height: number; dpi: number } | null };

useTestServer((s, a) => {
  server = s;
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
      // The display and the session belong to the sandbox's user, not root (the template names no user).
      const owners = await api.exec(sandbox.id, { command: "ps -o user= -C Xvfb,xfwm4,xfce4-session | sort -u" });
      expect(owners.stdout).toBe("user\n");
      const moved = await mouse({ action: "move", x: 123, y: 45 });
      expect(moved).toEqual({ x: 123, y: 45 });
      expect((await api.get<DesktopState>(path())).body.cursor).toEqual({ x: 123, y: 45 });
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "shows the screen's true pixels: the same picture as scrot's inside the sandbox, and a region is its part",
    async () => {
      const full = decodePng((await screenshot()).png);
      const scrot = await api.exec(sandbox.id, {
        command: "scrot -o /tmp/screen.png && base64 -w0 /tmp/screen.png",
        user: "user",
        env: { DISPLAY: ":0" },
      });
      expect(scrot.exitCode, scrot.stderr).toBe(0);
      const reference = decodePng(Buffer.from(scrot.stdout, "base64"));
      expect([reference.width, reference.height]).toEqual([full.width, full.height]);
      // Taken a moment apart: the panel's clock may tick in between, nothing else moves.
      expect(changedPixels(reference, full)).toBeLessThan(full.width * full.height * 0.01);

      const region = { x: 150, y: 0, width: 300, height: 120 };
      const part = decodePng((await screenshot(`?x=${region.x}&y=${region.y}&width=300&height=120`)).png);
      expect(changedPixels(crop(full, region), part)).toBeLessThan(region.width * region.height * 0.01);
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
      // The desktop behind the dialog repaints after the window left the list: the screen differs soon after.
      await waitFor(
        async () => ((await screenshot()).png.equals(before.png) ? undefined : true),
        30_000,
        "the screen to show the dialog gone",
      );
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "types non-ASCII text and key combos into the focused window (a Chromium page's text field)",
    async () => {
      // The page's title follows its text field, and the window manager lists the title: what reached the
      // field shows in the window list. The title says "ready" once the field has the focus: keys typed
      // before that (the window is focused before its page has loaded) would go nowhere.
      const page = encodeURIComponent(
        "<input autofocus onfocus=\"document.title='ready'\" oninput=\"document.title=this.value || 'empty'\">",
      );
      await launch({ command: `chromium --app="data:text/html,${page}"` });
      const browser = await windowOf("Chromium");
      await waitFor(async () => ((await windows()).find((w) => w.id === browser.id)?.focused ? true : undefined));
      const title = async () => (await windows()).find((w) => w.id === browser.id)?.title;
      await waitFor(async () => ((await title()) === "ready" ? true : undefined), 30_000, "the text field's focus");
      // The window's part on the 800×600 screen (its frame may reach past the edge).
      const [x, y] = [Math.max(0, browser.x), Math.max(0, browser.y)];
      const region = `?x=${x}&y=${y}&width=${Math.min(browser.width, 800 - x)}&height=${Math.min(browser.height, 600 - y)}`;
      const before = await screenshot(region);
      await keyboard({ action: "type", text: "héllo wörld ✓" });
      await waitFor(async () => ((await title()) === "héllo wörld ✓" ? true : undefined), 30_000, "the typed title");
      // The typed text shows in the page: its pixels change (Chromium repaints after the title changed).
      await waitFor(
        async () => (!(await screenshot(region)).png.equals(before.png) ? true : undefined),
        30_000,
        "the typed text to show in the page",
      );

      // ctrl+a selects what was typed: the next text replaces it.
      await keyboard({ action: "press", keys: "ctrl+a" });
      await keyboard({ action: "type", text: "right" });
      await waitFor(async () => ((await title()) === "right" ? true : undefined), 30_000, "the replaced title");
      await keyboard({ action: "press", keys: ["ctrl+a", "BackSpace"] });
      await waitFor(async () => ((await title()) === "empty" ? true : undefined), 30_000, "the emptied title");
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "launches an application by its .desktop name, lists its window and focuses a window on request",
    async () => {
      const page = (await windows()).find((w) => w.className === "Chromium")!;
      const { pid } = await launch({ application: "chromium", uri: "about:blank" });
      expect(pid).toBeGreaterThan(0);
      const second = await waitFor(
        async () => (await windows()).find((w) => w.className === "Chromium" && w.id !== page.id),
        60_000,
        "a second Chromium window",
      );
      expect(second.width).toBeGreaterThan(100);
      await waitFor(async () => ((await windows()).find((w) => w.id === second.id)?.focused ? true : undefined));
      const focus = await api.post(path(`/windows/${page.id}/focus`));
      expect(focus.status).toBe(204);
      await waitFor(async () => ((await windows()).find((w) => w.id === page.id)?.focused ? true : undefined));
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
    "keeps the display and its windows across pause and resume, Chromium's included",
    async () => {
      // Chromium, open since the tests above, maps a metrics file and deletes it a few seconds after it starts;
      // runsc cannot checkpoint a deleted file that is still open, so the pause failed and killed the sandbox.
      // The template's preload leaves a file its process still maps in place.
      expect((await windows()).some((w) => w.className === "Chromium")).toBe(true);
      const metrics = await api.exec(sandbox.id, { command: "grep -h '[.]pma' /proc/$(pgrep -o -x chromium)/maps" });
      expect(metrics.stdout).toMatch(/BrowserMetrics-\w+-\w+\.pma\n/);
      expect(metrics.stdout).not.toContain("(deleted)");
      await launch({ command: 'xmessage -center "kept across pause"' });
      await windowOf("Xmessage");
      // The applications' windows and the desktop's; the panel's own come and go (its popups).
      const lasting = async () =>
        (await windows())
          .filter((w) => w.className !== "Xfce4-panel")
          .map((w) => `${w.id} ${w.className}`)
          .sort();
      const before = await lasting();
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/pause`)).body.status).toBe("paused");
      expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/resume`)).body.status).toBe("running");
      expect(await lasting()).toEqual(before);
      expect((await windows()).some((w) => w.className === "Xfce4-panel")).toBe(true);
      expect(await screenshot()).toMatchObject({ width: 800, height: 600 });
      expect((await mouse({ action: "move", x: 5, y: 6 })).x).toBe(5);
    },
    DESKTOP_TIMEOUT_MS,
  );

  it(
    "gives a snapshot's child a working desktop with the source's windows",
    async () => {
      // A child restored from a snapshot taken with Chromium open failed to start once in five runs (runsc:
      // "containerManager.Restore failed: EOF"), not yet understood: Chromium is closed first, as before.
      await api.exec(sandbox.id, { command: "pkill -x chromium; true" });
      await waitFor(async () => ((await windows()).some((w) => w.className === "Chromium") ? undefined : true));
      const snap = await api.post<{ id: string; status: string }>(`/v1/sandboxes/${sandbox.id}/snapshots`, {});
      expect(snap.status).toBe(201);
      await waitFor(async () =>
        (await api.get<{ status: string }>(`/v1/snapshots/${snap.body.id}`)).body.status === "ready" ? true : undefined,
      );
      const child = (await api.createSandbox({ snapshotId: snap.body.id })) as typeof sandbox;
      try {
        expect(child.desktop).toEqual({ width: 800, height: 600, dpi: 96 });
        const childWindows = (await windows(child.id)).map((w) => w.className);
        expect(childWindows).toContain("Xmessage");
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

describe("desktop sandboxes created through the E2B dialect", () => {
  it(
    "leave the display to the client (@e2b/desktop starts its own) and adopt it on the first native call",
    async () => {
      const res = await fetch(`${server.url}/e2b/sandboxes`, {
        method: "POST",
        headers: { "x-api-key": server.apiKey, "content-type": "application/json" },
        body: JSON.stringify({ templateID: "desktop", timeout: 600 }),
      });
      expect(res.status).toBe(201);
      const { sandboxID } = (await res.json()) as { sandboxID: string };
      try {
        // What @e2b/desktop runs first: a display of its own size.
        await api.exec(sandboxID, {
          command: "Xvfb :0 -ac -screen 0 1280x720x24 -nolisten tcp -nolisten unix",
          user: "user",
          background: true,
        });
        const state = await waitFor(
          async () => {
            const r = await api.get<DesktopState>(path("", sandboxID));
            return r.status === 200 ? r.body : undefined;
          },
          DESKTOP_TIMEOUT_MS,
          "the adopted desktop",
        );
        expect(state).toMatchObject({ width: 1280, height: 720 });
        const xvfb = await api.exec(sandboxID, { command: "ps -o args= -C Xvfb" });
        expect(xvfb.stdout.trim().split("\n")).toEqual([
          "Xvfb :0 -ac -screen 0 1280x720x24 -nolisten tcp -nolisten unix",
        ]);
      } finally {
        await api.del(`/v1/sandboxes/${sandboxID}`);
      }
    },
    DESKTOP_TIMEOUT_MS,
  );
});

/** The part of `image` in `region`, as an image of its own. */
function crop(image: Rgba, region: { x: number; y: number; width: number; height: number }): Rgba {
  const data = Buffer.alloc(region.width * region.height * 4);
  for (let row = 0; row < region.height; row++) {
    const from = ((region.y + row) * image.width + region.x) * 4;
    image.data.copy(data, row * region.width * 4, from, from + region.width * 4);
  }
  return { width: region.width, height: region.height, data };
}
