import type { ConsoleMessage, Locator, Page, Request } from "playwright-core";
import WebSocket from "ws";
import { waitFor } from "./api.js";
import { decodePng, distinctColours, type Rgba } from "./png.js";

/**
 * Chromium's error for requests it dropped because the host's network changed. On a test host, sandboxes'
 * interfaces come and go all the time (every sandbox another test creates or destroys): Chromium sees
 * each change and aborts what is in flight — noVNC's modules or its WebSocket — and the page never
 * connects. A viewer on another machine does not see the host's interfaces.
 */
const NETWORK_CHANGED = "ERR_NETWORK_CHANGED";
const ATTEMPTS = 6;

/**
 * What a page did while it was being watched: requests unfinished and failed, console errors. `changed`
 * settles when Chromium dropped one of noVNC's own requests (a URL containing `noVNC`) for a network change:
 * the page around it (the console) polls too, and its requests dropped meanwhile do not stop noVNC.
 */
function watchPage(page: Page, noVNC: string) {
  const pending = new Map<Request, number>();
  const failed: string[] = [];
  const consoleErrors: string[] = [];
  let networkChanged: () => void = () => undefined;
  const changed = new Promise<"network changed">((resolve) => {
    networkChanged = () => resolve("network changed");
  });
  const started = (r: Request) => void pending.set(r, Date.now());
  const finished = (r: Request) => void pending.delete(r);
  const failedOne = (r: Request) => {
    pending.delete(r);
    const why = r.failure()?.errorText ?? "";
    failed.push(`${new URL(r.url()).pathname} (${why})`);
    if (why.includes(NETWORK_CHANGED) && r.url().includes(noVNC)) networkChanged();
  };
  const logged = (message: ConsoleMessage) => {
    if (message.type() !== "error") return;
    consoleErrors.push(message.text());
    // A WebSocket's failure names its URL in the text; a resource's is the message's location.
    const about = `${message.location().url} ${message.text()}`;
    if (message.text().includes(NETWORK_CHANGED) && about.includes(noVNC)) networkChanged();
  };
  page.on("request", started);
  page.on("requestfinished", finished);
  page.on("requestfailed", failedOne);
  page.on("console", logged);
  return {
    changed,
    report: () =>
      `requests not finished: ${[...pending].map(([r, at]) => `${new URL(r.url()).pathname} (${Date.now() - at} ms)`).join(", ") || "none"}\n` +
      `requests failed: ${failed.join(", ") || "none"}\nconsole errors: ${consoleErrors.join(" | ") || "none"}`,
    stop: () => {
      page.off("request", started);
      page.off("requestfinished", finished);
      page.off("requestfailed", failedOne);
      page.off("console", logged);
    },
  };
}

/** Where noVNC's page is: the page itself, or a frame of it. */
interface NoVncRoot {
  locator(selector: string): Locator;
}

/**
 * Loads noVNC (`load`, given the attempt's number) and waits until it says it is connected to the VNC
 * server. A load that Chromium aborted because the host's network changed (see NETWORK_CHANGED) is tried
 * again, up to ATTEMPTS loads in all; nothing else is. A page that does not connect fails with noVNC's status
 * line, its requests that never finished or failed, its console errors and what `diagnose` finds (e.g. the
 * stream's own output).
 */
export async function loadLiveView(
  page: Page,
  {
    load,
    root,
    noVNC,
    diagnose,
  }: {
    load: (attempt: number) => Promise<unknown>;
    root: NoVncRoot;
    /** Part of every URL noVNC loads (its directory, or its host) and of none the page around it does. */
    noVNC: string;
    diagnose?: () => Promise<string>;
  },
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const watch = watchPage(page, noVNC);
    try {
      await load(attempt);
      const connected = root
        .locator("html.noVNC_connected")
        .waitFor({ timeout: 60_000 })
        .then(() => "connected" as const);
      // Left behind when the network changed first: its later failure is not this load's.
      connected.catch(() => undefined);
      const outcome = await Promise.race([connected, watch.changed]);
      if (outcome === "connected") return;
      if (attempt < ATTEMPTS) continue;
      throw new Error(`Chromium dropped the page's requests ${ATTEMPTS} times: the host's network changed`);
    } catch (e) {
      const status = await root
        .locator("#noVNC_status")
        .textContent({ timeout: 1000 })
        .catch(() => null);
      const found = diagnose ? await diagnose().catch((d: unknown) => `(no diagnosis: ${String(d)})`) : "";
      throw new Error(
        `${e instanceof Error ? e.message : String(e)} (load ${attempt})\nnoVNC's status: ${status}\n${watch.report()}\n${found}`,
      );
    } finally {
      watch.stop();
    }
  }
}

/** Opens noVNC's page at `url` until it connects (see loadLiveView). */
export async function openLiveView(page: Page, url: string, diagnose?: () => Promise<string>): Promise<void> {
  // Its files and its WebSocket are beside the page (relative URLs): the page's directory, whatever the scheme.
  const noVNC = url
    .split("?")[0]!
    .replace(/[^/]*$/, "")
    .replace(/^[a-z]+:/, "");
  await loadLiveView(page, { load: () => page.goto(url), root: page, noVNC, ...(diagnose ? { diagnose } : {}) });
}

/** What noVNC's canvas shows now. */
export async function liveViewPicture(page: Page): Promise<Rgba> {
  return decodePng(await page.locator("#noVNC_container canvas").screenshot());
}

/**
 * Waits until noVNC's canvas shows a desktop: a picture of many colours, not the blank (one-colour)
 * canvas it starts with.
 */
export async function waitForDesktopPicture(page: Page): Promise<Rgba> {
  return waitFor(
    async () => {
      const picture = await liveViewPicture(page);
      return distinctColours(picture) > 50 ? picture : undefined;
    },
    60_000,
    "the live view to show the desktop",
  );
}

/** The status a WebSocket upgrade gets: 101 when it opened, else the refusal's status. */
export function upgradeStatus(url: string): Promise<number> {
  const ws = new WebSocket(url.replace(/^http/, "ws"));
  return new Promise<number>((resolve, reject) => {
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on("open", () => {
      resolve(101);
      ws.close();
    });
    ws.on("error", (e) => reject(e));
  });
}
