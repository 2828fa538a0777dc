// The official `@e2b/desktop` SDK, configured as the README configures `e2b` (E2B_API_KEY, E2B_API_URL,
// E2B_SANDBOX_URL, E2B_DOMAIN), against Sandpit: its own Xvfb + Xfce start, xdotool input, scrot
// screenshots, gtk-launch, and its noVNC stream through Sandpit's port routing by host name.
import { Sandbox } from "@e2b/desktop";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/api.js";
import { launchBrowser } from "../helpers/browser.js";
import { openLiveView, waitForDesktopPicture } from "../helpers/live-view.js";
import { serverEntry } from "../helpers/paths.js";
import { changedBox, changedPixels, decodePng, type Region, type Rgba } from "../helpers/png.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

const DOMAIN = "sandpit.test";
let server: TestServer;
useTestServer(
  (s) => {
    server = s;
  },
  { SANDPIT_DOMAIN: DOMAIN },
);

const saved = { ...process.env };
let desktop: Sandbox;
let browser: Browser | undefined;

beforeAll(async () => {
  const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const { key } = await createApiKey({ dataDir: server.dataDir, org: "e2b-desktop-users", format: "e2b" });
  process.env.E2B_API_KEY = key;
  process.env.E2B_API_URL = `${server.url}/e2b`;
  process.env.E2B_SANDBOX_URL = `${server.url}/e2b/envd`;
  process.env.E2B_DOMAIN = DOMAIN;
  desktop = await Sandbox.create({ timeoutMs: 600_000 });
});

afterAll(async () => {
  await browser?.close();
  await desktop?.kill().catch(() => undefined);
  process.env = saved;
});

async function screenshot(): Promise<Rgba> {
  return decodePng(await desktop.screenshot());
}

/** Screenshots until two in a row are the same: whatever was drawing has finished. */
async function settledScreenshot(): Promise<Rgba> {
  let last = await screenshot();
  return waitFor(
    async () => {
      const next = await screenshot();
      const same = changedPixels(last, next) === 0;
      last = next;
      return same ? next : undefined;
    },
    30_000,
    "the screen to settle",
  );
}

/** A window's position and size, as xdotool reports them. */
async function geometry(windowId: string): Promise<Region> {
  const out = (await desktop.commands.run(`xdotool getwindowgeometry --shell ${windowId}`)).stdout;
  const value = (name: string) => Number(new RegExp(`^${name}=(\\d+)$`, "m").exec(out)?.[1]);
  return { x: value("X"), y: value("Y"), width: value("WIDTH"), height: value("HEIGHT") };
}

/** The ids of the visible windows of an X class (empty when there are none). */
async function windowsOf(windowClass: string): Promise<string[]> {
  const r = await desktop.commands.run(`xdotool search --onlyvisible --class ${windowClass} || true`);
  return r.stdout.split("\n").filter((l) => l.trim() !== "");
}

const inside = (box: Region, region: Region) =>
  box.x >= region.x &&
  box.y >= region.y &&
  box.x + box.width <= region.x + region.width &&
  box.y + box.height <= region.y + region.height;

describe("@e2b/desktop SDK", () => {
  it("creates its default template (desktop) and its own display: screen size and cursor", async () => {
    expect((await desktop.getInfo()).templateId).toBe("desktop");
    expect(await desktop.getScreenSize()).toEqual({ width: 1024, height: 768 });
    await desktop.moveMouse(123, 234);
    expect(await desktop.getCursorPosition()).toEqual({ x: 123, y: 234 });
  });

  it("launches a terminal, types into it, and the pixels change where the text went", async () => {
    await desktop.launch("xfce4-terminal");
    const [terminal] = await waitFor(
      async () => {
        const ids = await windowsOf("xfce4-terminal");
        return ids.length > 0 ? ids : undefined;
      },
      60_000,
      "the terminal window",
    );
    await waitFor(
      async () => ((await desktop.getCurrentWindowId()) === terminal ? true : undefined),
      30_000,
      "the terminal to have the focus",
    );
    const window = await geometry(terminal!);
    // Out of the way of the typed text, and still: the pointer is drawn into scrot's screenshots.
    await desktop.moveMouse(1000, 10);
    const before = await settledScreenshot();
    await desktop.write("echo hello");
    await desktop.press("enter");
    const after = await waitFor(
      async () => {
        const now = await settledScreenshot();
        return changedPixels(before, now, window) > 0 ? now : undefined;
      },
      30_000,
      "the typed text to show",
    );
    const box = changedBox(before, after);
    expect(box).toBeDefined();
    // Every changed pixel is in the terminal window (where the text went), none elsewhere on the screen.
    expect(inside(box!, window)).toBe(true);
    expect(changedPixels(before, after, window)).toBeGreaterThan(50);
  });

  it("a left click on xmessage's button closes it: the screen changes back", async () => {
    await desktop.commands.run("xmessage -geometry 300x120+362+324 -buttons 'Press me' 'click the button'", {
      background: true,
    });
    const [message] = await waitFor(
      async () => {
        const ids = await windowsOf("Xmessage");
        return ids.length > 0 ? ids : undefined;
      },
      30_000,
      "the xmessage window",
    );
    const window = await geometry(message!);
    const shown = await settledScreenshot();
    // The button sits at the bottom left of the window (Athena's form layout).
    await desktop.leftClick(window.x + 30, window.y + window.height - 14);
    await waitFor(
      async () => ((await windowsOf("Xmessage")).length === 0 ? true : undefined),
      30_000,
      "the xmessage window to close",
    );
    const closed = await settledScreenshot();
    expect(changedPixels(shown, closed, window)).toBeGreaterThan(1000);
  });

  it("stream.start() serves noVNC; getUrl() opens through Sandpit's port host and shows the desktop", async () => {
    await desktop.stream.start();
    const url = new URL(desktop.stream.getUrl());
    expect(url.host).toBe(`6080-${desktop.sandboxId}.${DOMAIN}`);
    expect(url.pathname).toBe("/vnc.html");
    // The SDK names an https URL; Sandpit serves plain HTTP (TLS goes in front of it): the same page over
    // http, with the wildcard name resolved to this server as DNS would.
    url.protocol = "http:";
    const serverUrl = new URL(server.url);
    const launched = await launchBrowser([`--host-resolver-rules=MAP *.${DOMAIN} ${serverUrl.host}`]);
    browser = launched.browser;
    const page: Page = launched.page;
    await openLiveView(page, url.toString());
    await waitForDesktopPicture(page);
    await desktop.stream.stop();
  });
});
