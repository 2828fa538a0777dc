import type { Page, Request } from "playwright-core";
import WebSocket from "ws";
import { waitFor } from "./api.js";
import { decodePng, distinctColours, type Rgba } from "./png.js";

/**
 * Opens a noVNC page and waits until noVNC says it is connected to the VNC server. A page that does not
 * connect fails with noVNC's status line and what `diagnose` finds (e.g. the stream's own output).
 */
export async function openLiveView(page: Page, url: string, diagnose?: () => Promise<string>): Promise<void> {
  // The page's requests that have not finished, and those that failed: a page that stalls half loaded
  // shows which of its files never came.
  const pending = new Map<Request, number>();
  const failed: string[] = [];
  const started = (r: Request) => void pending.set(r, Date.now());
  const finished = (r: Request) => void pending.delete(r);
  const failedOne = (r: Request) => {
    pending.delete(r);
    failed.push(`${new URL(r.url()).pathname} (${r.failure()?.errorText})`);
  };
  page.on("request", started);
  page.on("requestfinished", finished);
  page.on("requestfailed", failedOne);
  try {
    await page.goto(url);
    await page.waitForSelector("html.noVNC_connected", { timeout: 60_000 });
  } catch (e) {
    const status = await page
      .locator("#noVNC_status")
      .textContent({ timeout: 1000 })
      .catch(() => null);
    const unfinished = [...pending].map(([r, at]) => `${new URL(r.url()).pathname} (${Date.now() - at} ms)`);
    const found = diagnose ? await diagnose().catch((d: unknown) => `(no diagnosis: ${String(d)})`) : "";
    throw new Error(
      `${e instanceof Error ? e.message : String(e)}\nnoVNC's status: ${status}\n` +
        `requests not finished: ${unfinished.join(", ") || "none"}\nrequests failed: ${failed.join(", ") || "none"}\n${found}`,
    );
  } finally {
    page.off("request", started);
    page.off("requestfinished", finished);
    page.off("requestfailed", failedOne);
  }
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
