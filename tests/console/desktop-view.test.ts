// The console's live view of a desktop sandbox in a real browser (headless chromium): started from the
// sandbox page, framed from the port host (its own origin), stopped again.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { apiClient, SandboxBody } from "../helpers/api.js";
import { launchBrowser } from "../helpers/browser.js";
import { startDisplay } from "../helpers/desktop-display.js";
import { loadLiveView } from "../helpers/live-view.js";
import { decodePng, distinctColours } from "../helpers/png.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

const DOMAIN = "sandpit.test";
let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer(
  (s, a) => {
    server = s;
    api = a;
  },
  { SANDPIT_DOMAIN: DOMAIN },
);

let browser: Browser;
let page: Page;
let sandbox: SandboxBody;

beforeAll(async () => {
  sandbox = await api.createSandbox({ template: "desktop", timeoutMs: 600_000 });
  await startDisplay(api, sandbox.id);
  // The port hosts resolve to this server, as a wildcard DNS entry would make them.
  ({ browser, page } = await launchBrowser([`--host-resolver-rules=MAP *.${DOMAIN} ${new URL(server.url).host}`]));
  await page.goto(`${server.url}/console/`);
  await page.getByTestId("api-key").fill(server.apiKey);
  await page.getByTestId("sign-in").click();
  await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
});

afterAll(async () => {
  await browser?.close();
  if (sandbox) await api.del(`/v1/sandboxes/${sandbox.id}`);
});

describe("console live view", () => {
  it("starts the live view from the Desktop tab and shows the desktop in a frame; Stop ends it", async () => {
    await page.goto(`${server.url}/console/sandboxes/${sandbox.id}/desktop`);
    await page.getByText("No live view is running.").waitFor();
    const frame = page.frameLocator("[data-testid=live-view]");
    // Started by the button; a load that Chromium dropped (the host's network changed) is the tab reloaded,
    // which shows the running stream.
    await loadLiveView(page, {
      load: (attempt) => (attempt === 1 ? page.getByTestId("live-view-start").click() : page.reload()),
      root: frame,
      noVNC: `6080-${sandbox.id}.`,
    });
    expect(new URL((await page.getByTestId("live-view").getAttribute("src"))!).host).toBe(
      `6080-${sandbox.id}.${DOMAIN}:${new URL(server.url).port}`,
    );
    await expect
      .poll(async () => distinctColours(decodePng(await frame.locator("#noVNC_container canvas").screenshot())), {
        timeout: 60_000,
      })
      .toBeGreaterThan(50);

    await page.getByTestId("live-view-stop").click();
    await page.getByText("No live view is running.").waitFor();
    expect((await api.get(`/v1/sandboxes/${sandbox.id}/desktop/stream`)).status).toBe(404);
  });
});
