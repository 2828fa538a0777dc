import { type Browser, chromium, type Page } from "playwright-core";

/** Debian's chromium unless SANDPIT_TEST_CHROMIUM names another. */
export const CHROMIUM = process.env.SANDPIT_TEST_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Headless chromium (driven by playwright-core) and one page, as the console's browser tests use them;
 * `args` are more command-line switches (e.g. `--host-resolver-rules` for wildcard host names).
 */
export async function launchBrowser(args: string[] = []): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Chromium's own sandbox cannot start as root (the test machine runs tests as root).
    args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), ...args],
  });
  const page = await browser.newPage({ viewport: { width: 1360, height: 860 }, acceptDownloads: true });
  // Destroy and delete ask for confirmation.
  page.on("dialog", (dialog) => dialog.accept());
  return { browser, page };
}
