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

/**
 * Where xmessage's (only) button is on the screen: of the window's descendants (Athena widgets, each an X
 * window; `xwininfo -tree` gives their sizes and absolute positions), the smallest one in the window's lower
 * half, where the form puts its button box.
 */
async function xmessageButton(windowId: string, window: Region): Promise<Region> {
  const tree = (await desktop.commands.run(`xwininfo -tree -id ${windowId}`)).stdout;
  const children = [...tree.matchAll(/ (\d+)x(\d+)\+-?\d+\+-?\d+ +\+(-?\d+)\+(-?\d+)\s*$/gm)].map((m) => ({
    width: Number(m[1]),
    height: Number(m[2]),
    x: Number(m[3]),
    y: Number(m[4]),
  }));
  const lower = children.filter((c) => c.y >= window.y + window.height / 2 && c.width > 0 && c.height > 0);
  const button = lower.sort((a, b) => a.width * a.height - b.width * b.height)[0];
  if (!button) throw new Error(`no button in xmessage's window tree:\n${tree}`);
  return button;
}

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
    // Below the top panel, whose clock may tick meanwhile, the change is where the text went: mostly in the
    // terminal's window. Not all of it: the window manager redraws the frame's title (the shell names the
    // running command) and the taskbar's button, both outside the window itself.
    const panel = Math.max(
      ...(await Promise.all((await windowsOf("Xfce4-panel")).map(geometry)))
        .filter((g) => g.y === 0)
        .map((g) => g.height),
      0,
    );
    const belowPanel = { x: 0, y: panel, width: before.width, height: before.height - panel };
    expect(changedBox(before, after, belowPanel)).toBeDefined();
    const inWindow = changedPixels(before, after, window);
    expect(inWindow).toBeGreaterThan(50);
    expect(inWindow).toBeGreaterThan(changedPixels(before, after, belowPanel) / 2);
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
    const button = await xmessageButton(message!, window);
    const shown = await settledScreenshot();
    await desktop.leftClick(button.x + Math.floor(button.width / 2), button.y + Math.floor(button.height / 2));
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
