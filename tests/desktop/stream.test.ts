// The native live view: x11vnc + noVNC in a real desktop sandbox, reached through Sandpit's port proxy with a
// token of the stream's own, opened in headless Chromium.
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { DesktopStream } from "@sandpit/contract";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import { launchBrowser } from "../helpers/browser.js";
import { startDisplay } from "../helpers/desktop-display.js";
import { openLiveView, upgradeStatus, waitForDesktopPicture } from "../helpers/live-view.js";
import { repoRoot } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody & { trafficToken: string };
let browser: Browser;
let page: Page;

useTestServer((s, a) => {
  server = s;
  api = a;
});

beforeAll(async () => {
  // 6080 is also listed as an ordinary port, so that the traffic token would open it if the live view let it.
  sandbox = (await api.createSandbox({
    template: "desktop",
    timeoutMs: 900_000,
    ports: [8000, 6080],
  })) as SandboxBody & {
    trafficToken: string;
  };
  await startDisplay(api, sandbox.id);
  ({ browser, page } = await launchBrowser());
});

afterAll(async () => {
  await browser?.close();
  if (sandbox) await api.del(`/v1/sandboxes/${sandbox.id}`);
});

const streamPath = () => `/v1/sandboxes/${sandbox.id}/desktop/stream`;

async function startStream(body: { viewOnly?: boolean } = {}): Promise<DesktopStream> {
  const res = await api.post<DesktopStream>(streamPath(), body);
  if (res.status !== 200) throw new Error(`start failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** The proxied noVNC page of this sandbox, with the token given as a path segment (or none). */
const pageUrl = (token?: string, port = 6080) =>
  `${server.url}/v1/sandboxes/${sandbox.id}/ports/${port}${token === undefined ? "" : `/sandpit_token/${token}`}/vnc.html`;
const websockifyUrl = (token?: string) => pageUrl(token).replace(/vnc\.html$/, "websockify");

/** Where the X pointer is, as `xdotool getmouselocation` reports it. */
/** The live view's own output (its script's and websockify's), for a page that does not connect. */
async function streamOutput(): Promise<string> {
  const { commands } = (
    await api.get<{ commands: { commandId: string; status: string; command: string[] }[] }>(
      `/v1/sandboxes/${sandbox.id}/commands`,
    )
  ).body;
  const streams = commands.filter((c) => c.command.join(" ").includes("x11vnc"));
  const outputs = await Promise.all(
    streams.map(async (c) => {
      const res = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/commands/${c.commandId}/logs`, {
        headers: { authorization: `Bearer ${server.apiKey}`, accept: "application/x-ndjson" },
        signal: AbortSignal.timeout(3000),
      });
      const text = await res.text().catch((e: unknown) => `(cut off: ${String(e)})`);
      return `stream command ${c.commandId} (${c.status}):\n${text.slice(-4000)}`;
    }),
  );
  const ps = await api.exec(sandbox.id, {
    command: "ps -eo pid,stat,etime,args | grep -E 'x11vnc|websockify|vnc_probe' | grep -v grep",
  });
  // Port 6080's connections with their queues: bytes a websockify child has not read, or not sent.
  const sockets = await api.exec(sandbox.id, {
    command: "grep -i -E '^ *[0-9]+: [0-9A-F]+:17C0 |^ *sl' /proc/net/tcp",
  });
  return `${outputs.join("\n")}\nprocesses:\n${ps.stdout}\nport 6080 in /proc/net/tcp:\n${sockets.stdout}`;
}

async function pointer(): Promise<{ x: number; y: number }> {
  const r = await api.exec(sandbox.id, { command: "xdotool getmouselocation", env: { DISPLAY: ":0" } });
  const m = /x:(\d+) y:(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no pointer position in ${JSON.stringify(r)}`);
  return { x: Number(m[1]), y: Number(m[2]) };
}

/** Moves the browser's mouse over noVNC's canvas to a point of the remote screen (1024×768, scaled). */
async function hoverRemote(x: number, y: number): Promise<void> {
  const box = await page.locator("#noVNC_container canvas").boundingBox();
  if (!box) throw new Error("no canvas");
  await page.mouse.move(box.x + (x / 1024) * box.width, box.y + (y / 768) * box.height, { steps: 5 });
}

describe("desktop live view", () => {
  it("starts x11vnc + noVNC and hands out a noVNC page URL that shows the desktop in a browser", async () => {
    const stream = await startStream();
    expect(stream).toMatchObject({ viewOnly: false, expiresAt: null });
    expect(stream.token).not.toBe(sandbox.trafficToken);
    expect(stream.url).toContain(`/v1/sandboxes/${sandbox.id}/ports/6080/sandpit_token/${stream.token}/vnc.html?`);
    await openLiveView(page, stream.url, streamOutput);
    const picture = await waitForDesktopPicture(page);
    expect(picture.width).toBeGreaterThan(0);
    writeFileSync(path.join(repoRoot, "docs/desktop-live-view.png"), await page.screenshot());
  });

  it("runs x11vnc and websockify as the display's owner, the sandbox's user (uid 1000), like Xvfb", async () => {
    const owners = await api.exec(sandbox.id, { command: "ps -o uid= -C Xvfb,x11vnc,websockify | sort -u" });
    expect(owners.stdout.trim()).toBe("1000");
  });

  it("an interactive stream moves the sandbox's pointer with the page's mouse", async () => {
    await hoverRemote(300, 200);
    const at = await waitFor(
      async () => {
        const p = await pointer();
        return Math.abs(p.x - 300) <= 3 && Math.abs(p.y - 200) <= 3 ? p : undefined;
      },
      20_000,
      "the pointer to follow the page's mouse",
    );
    expect(at.x).toBeGreaterThan(0);
  });

  it("a second start as asked returns the running stream; GET shows it", async () => {
    const first = (await api.get<DesktopStream>(streamPath())).body;
    const again = await startStream({ viewOnly: false });
    expect(again.streamId).toBe(first.streamId);
    expect(again.token).toBe(first.token);
  });

  it("refuses a missing or wrong token, and the traffic token, for the page and the WebSocket", async () => {
    const { token } = (await api.get<DesktopStream>(streamPath())).body;
    expect((await fetch(pageUrl())).status).toBe(401);
    // Its last character changed (to another one: a token may end in "x").
    const wrong = `${token.slice(0, -1)}${token.endsWith("x") ? "y" : "x"}`;
    expect((await fetch(pageUrl(wrong))).status).toBe(403);
    expect((await fetch(pageUrl(sandbox.trafficToken))).status).toBe(403);
    expect((await fetch(pageUrl(), { headers: { "x-sandpit-traffic-token": sandbox.trafficToken } })).status).toBe(403);
    expect(await upgradeStatus(websockifyUrl())).toBe(401);
    expect(await upgradeStatus(websockifyUrl("wrong"))).toBe(403);
    expect(await upgradeStatus(websockifyUrl(sandbox.trafficToken))).toBe(403);
    // The right token opens both.
    expect((await fetch(pageUrl(token))).status).toBe(200);
    expect(await upgradeStatus(websockifyUrl(token))).toBe(101);
  });

  it("the stream token opens no other port of the sandbox", async () => {
    await api.exec(sandbox.id, { command: "python3 -m http.server 8000 --bind 0.0.0.0", background: true });
    await waitFor(
      async () => ((await fetch(pageUrl(sandbox.trafficToken, 8000))).status === 404 ? true : undefined),
      20_000,
      "the sandbox's own web server on port 8000",
    );
    const { token } = (await api.get<DesktopStream>(streamPath())).body;
    expect((await fetch(pageUrl(token, 8000))).status).toBe(403);
  });

  it("a view-only stream replaces the interactive one and ignores the page's input", async () => {
    const interactive = (await api.get<DesktopStream>(streamPath())).body;
    const viewOnly = await startStream({ viewOnly: true });
    expect(viewOnly.viewOnly).toBe(true);
    expect(viewOnly.token).not.toBe(interactive.token);
    expect(viewOnly.url).toContain("view_only=true");
    expect((await fetch(pageUrl(interactive.token))).status).toBe(403);

    // The page without noVNC's own view_only flag: input is sent, and the server must drop it.
    const url = new URL(viewOnly.url);
    url.searchParams.delete("view_only");
    await openLiveView(page, url.toString(), streamOutput);
    await waitForDesktopPicture(page);
    const before = await pointer();
    await hoverRemote(before.x > 500 ? 100 : 900, before.y > 400 ? 100 : 700);
    await page.mouse.down();
    await page.mouse.up();
    // A window opened inside the sandbox reaches the page after the input above reached x11vnc (one
    // connection, in order): once the page shows it, the input had its chance to move the pointer.
    const pictureBefore = await waitForDesktopPicture(page);
    await api.exec(sandbox.id, {
      command: "xmessage -geometry 400x200+312+284 'view only'",
      env: { DISPLAY: ":0" },
      background: true,
    });
    await waitFor(
      async () => {
        const now = await waitForDesktopPicture(page);
        return now.data.equals(pictureBefore.data) ? undefined : true;
      },
      30_000,
      "the page to show the new window",
    );
    expect(await pointer()).toEqual(before);
    await api.exec(sandbox.id, { command: "pkill -x xmessage || true" });
  });

  it("keeps the live view through pause and resume: the page connects again", async () => {
    const stream = (await api.get<DesktopStream>(streamPath())).body;
    expect((await api.post(`/v1/sandboxes/${sandbox.id}/pause`)).status).toBe(200);
    expect((await api.post(`/v1/sandboxes/${sandbox.id}/resume`)).status).toBe(200);
    expect((await api.get<DesktopStream>(streamPath())).body.token).toBe(stream.token);
    await openLiveView(page, stream.url, streamOutput);
    await waitForDesktopPicture(page);
  });

  it("DELETE stops the stream: its token is refused, GET answers 404, and a new start gets a new token", async () => {
    const stream = (await api.get<DesktopStream>(streamPath())).body;
    expect((await api.del(streamPath())).status).toBe(204);
    expect((await api.del(streamPath())).status).toBe(204);
    expect((await api.get(streamPath())).status).toBe(404);
    // No live view: 6080 is this sandbox's ordinary port again, and the old token is not its traffic token.
    expect((await fetch(pageUrl(stream.token))).status).toBe(403);
    expect(await upgradeStatus(websockifyUrl(stream.token))).toBe(403);
    const next = await startStream();
    expect(next.token).not.toBe(stream.token);
    expect((await fetch(pageUrl(stream.token))).status).toBe(403);
    expect((await fetch(pageUrl(next.token))).status).toBe(200);
  });
});
