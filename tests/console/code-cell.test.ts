// The console's code cell in a real browser (headless chromium) against a test server and one
// code-interpreter sandbox.
import path from "node:path";
import type { Browser, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { apiClient } from "../helpers/api.js";
import { launchBrowser } from "../helpers/browser.js";
import { repoRoot } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer((s, a) => {
  server = s;
  api = a;
});

let browser: Browser;
let page: Page;
let sandboxId: string;

beforeAll(async () => {
  sandboxId = (await api.createSandbox({ template: "code-interpreter", timeoutMs: 600_000 })).id;
  ({ browser, page } = await launchBrowser());
  await page.goto(`${server.url}/console/`);
  await page.getByTestId("api-key").fill(server.apiKey);
  await page.getByTestId("sign-in").click();
  await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
});

afterAll(async () => {
  await browser?.close();
});

/** A screenshot for docs/console, taken only when asked (SANDPIT_CONSOLE_SCREENSHOTS=1), as console.test.ts does. */
async function screenshot(name: string) {
  if (process.env.SANDPIT_CONSOLE_SCREENSHOTS === "1") {
    await page.screenshot({ path: path.join(repoRoot, "docs/console", `${name}.png`), fullPage: true });
  }
}

/** Types a cell, runs it with the language chosen, and returns its output once it ended. */
async function runCell(code: string, language = "python"): Promise<Locator> {
  const before = await page.getByTestId("cell-run").count();
  await page.getByTestId("cell-language").selectOption(language);
  await page.getByTestId("cell-code").fill(code);
  await page.getByTestId("cell-run-button").click();
  const cell = page.getByTestId("cell-run").nth(before);
  await cell.and(page.locator("[data-status=ok], [data-status=error], [data-status=timeout]")).waitFor();
  return cell;
}

describe("console code cell", () => {
  it("is a tab of the sandbox page; a cell prints, shows its value, and the next cell sees its variables", async () => {
    await page.goto(`${server.url}/console/sandboxes/${sandboxId}`);
    await page.getByTestId("tab-code").click();
    expect(new URL(page.url()).pathname).toBe(`/console/sandboxes/${sandboxId}/code`);

    const first = await runCell("import sys\nx = 6 * 7\nprint('hello')\nprint('careful', file=sys.stderr)\nx");
    expect(await first.getAttribute("data-status")).toBe("ok");
    expect(await first.getByTestId("cell-stdout").textContent()).toBe("hello\n");
    expect(await first.getByTestId("cell-stderr").textContent()).toBe("careful\n");
    expect(await first.getByTestId("cell-result").textContent()).toBe("42");

    const second = await runCell("x + 1");
    expect(await second.getByTestId("cell-result").textContent()).toBe("43");
    // Both cells stay on the page, oldest first.
    expect(await page.getByTestId("cell-run").count()).toBe(2);
  });

  it("renders a matplotlib figure as an image", async () => {
    const cell = await runCell("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()");
    const image = cell.getByTestId("cell-image");
    expect(await image.getAttribute("src")).toMatch(/^data:image\/png;base64,iVBOR/);
    // The browser decoded it: it has a size.
    await expect
      .poll(() => image.evaluate((img) => (img as { naturalWidth?: number }).naturalWidth ?? 0))
      .toBeGreaterThan(100);
  });

  it("shows HTML (a DataFrame) in a sandboxed iframe whose scripts never run in the console", async () => {
    const cell = await runCell(
      [
        "import pandas as pd",
        "from IPython.display import HTML, display",
        "display(HTML(\"<b id='injected'>bold</b><script>parent.document.title = 'pwned'; document.title = 'ran'</script><img src=x onerror=\\\"parent.document.title='pwned'\\\">\"))",
        "pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})",
      ].join("\n"),
    );
    const frames = cell.getByTestId("cell-html");
    expect(await frames.count()).toBe(2);
    for (const frame of await frames.all()) expect(await frame.getAttribute("sandbox")).toBe("");
    // The DataFrame's table is inside the frame, not in the console's page.
    const table = cell.frameLocator("[data-testid=cell-html] >> nth=1").locator("table");
    await expect.poll(() => table.locator("td").allTextContents()).toEqual(expect.arrayContaining(["Oslo", "19"]));
    const injected = cell.frameLocator("[data-testid=cell-html] >> nth=0").locator("#injected");
    expect(await injected.textContent()).toBe("bold");
    expect(await page.locator("#injected").count()).toBe(0);
    expect(await page.title()).not.toBe("pwned");
    // The frame's own script did not run either (no allow-scripts).
    const srcdocFrames = page.frames().filter((f) => f.url() === "about:srcdoc");
    expect(srcdocFrames.length).toBeGreaterThan(0);
    for (const frame of srcdocFrames) expect(await frame.evaluate("document.title")).not.toBe("ran");
    await screenshot("code-cell");
  });

  it("shows an error with its traceback, and the context still runs the next cell", async () => {
    const cell = await runCell("def explode():\n    raise ValueError('bad input')\nexplode()");
    expect(await cell.getAttribute("data-status")).toBe("error");
    const traceback = await cell.getByTestId("cell-error").textContent();
    expect(traceback).toContain("explode()");
    expect(traceback).toMatch(/ValueError: bad input/);
    expect(await (await runCell("x")).getByTestId("cell-result").textContent()).toBe("42");
  });

  it("runs JavaScript in its own default context", async () => {
    await runCell("const greeting = 'hi from node'", "javascript");
    const cell = await runCell("console.log(greeting)", "javascript");
    expect(await cell.getByTestId("cell-stdout").textContent()).toBe("hi from node\n");
  });
});
