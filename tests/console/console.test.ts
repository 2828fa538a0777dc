import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { ClusterNode } from "@sandpit/contract";
import type { Browser, Locator, Page, Route } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { launchBrowser } from "../helpers/browser.js";
import { repoRoot } from "../helpers/paths.js";
import { type TestServer, testLogDir } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

// The web console in a real browser: Debian's chromium, headless, driven by playwright-core, against a
// test server with real gVisor sandboxes. Screenshots of each screen land in docs/console.

const ADMIN_KEY = `sp_admin_${randomBytes(16).toString("hex")}`;
let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer(
  (s, a) => {
    server = s;
    api = a;
  },
  { SANDPIT_ADMIN_KEY: ADMIN_KEY },
);

const SCREENSHOTS = path.join(repoRoot, "docs/console");

let browser: Browser;
let page: Page;

beforeAll(async () => {
  ({ browser, page } = await launchBrowser());
  if (process.env.SANDPIT_CONSOLE_SCREENSHOTS === "1") mkdirSync(SCREENSHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
});

// A browser test that fails says what the page showed and what the server logged last.
afterEach(async (context) => {
  if (context.task.result?.state !== "fail" || !page) return;
  const alerts = await page
    .getByRole("alert")
    .allTextContents()
    .catch(() => []);
  const log = (() => {
    try {
      return readFileSync(path.join(testLogDir, `${server.netPrefix}.log`), "utf8")
        .split("\n")
        .slice(-40)
        .join("\n");
    } catch {
      return "(no server log)";
    }
  })();
  process.stderr.write(
    `[console] page ${page.url()}; alerts: ${JSON.stringify(alerts)}\n[console] server log:\n${log}\n`,
  );
});

/** Screenshots for docs/console, refreshed only when asked (SANDPIT_CONSOLE_SCREENSHOTS=1): a test run leaves the checkout alone. */
const screenshot = async (name: string) => {
  if (process.env.SANDPIT_CONSOLE_SCREENSHOTS === "1") {
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
  }
};

/** The text of xterm's rendered rows, one string per row (xterm renders spaces as no-break spaces). */
async function terminalRows(): Promise<string[]> {
  return page
    .locator(".xterm-rows > div")
    .evaluateAll((rows) => rows.map((r) => (r.textContent ?? "").replace(/\u00a0/g, " ").trimEnd()));
}

function row(sandboxId: string): Locator {
  return page.locator(`[data-testid=sandbox-row][data-sandbox-id="${sandboxId}"]`);
}

describe("web console", () => {
  let sandboxId: string;
  let other: SandboxBody;

  it("is served at /console: the app for every page below it, hashed assets, a 404 for a missing asset", async () => {
    const index = await fetch(`${server.url}/console`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toMatch(/^text\/html/);
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await index.text();
    expect(html).toContain('<div id="app">');
    // No CDN: every script and stylesheet comes from the server itself.
    const assets = [...html.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
    expect(assets.length).toBeGreaterThan(0);
    for (const asset of assets) {
      expect(asset.startsWith("/console/assets/")).toBe(true);
      const res = await fetch(`${server.url}${asset}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toContain("immutable");
    }
    // A deep link is the app too (it routes in the browser).
    const deep = await fetch(`${server.url}/console/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/files?path=/tmp`);
    expect(deep.status).toBe(200);
    expect(await deep.text()).toBe(html);
    const missing = await fetch(`${server.url}/console/assets/missing-0000.js`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe("not_found");
    // The API beside it is untouched.
    expect((await fetch(`${server.url}/v1/sandboxes`)).status).toBe(401);
  });

  it("asks for an API key: a wrong key is refused, the right one opens the sandbox list", async () => {
    await page.goto(`${server.url}/console/`);
    await page.getByTestId("api-key").waitFor();
    await screenshot("login");

    await page.getByTestId("api-key").fill("sp_not-a-key");
    await page.getByTestId("sign-in").click();
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("refused");

    await page.getByTestId("api-key").fill(server.apiKey);
    await page.getByTestId("sign-in").click();
    await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
    // The key lives in the tab's sessionStorage: a reload keeps the session.
    expect(await page.evaluate('sessionStorage.getItem("sandpit.console.apiKey")')).toBe(server.apiKey);
    await page.reload();
    await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
  });

  it("creates a sandbox from the form and lists it running with its resources; filters narrow the list", async () => {
    other = await api.createSandbox({ metadata: { team: "other" } });
    await page.getByTestId("new-sandbox").click();
    await page.getByTestId("create-template").selectOption("base");
    await page.getByTestId("create-vcpus").fill("2");
    await page.getByTestId("create-memory").selectOption("512");
    await page.getByTestId("create-timeout").fill("10");
    await page.getByTestId("create-metadata").fill("purpose=console-test");
    // The request the form sends, and the server's answer to it: when the create fails, the test says why.
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/v1/sandboxes", {
        timeout: 60_000,
      }),
      page.getByTestId("create-submit").click(),
    ]);
    const answer = await response.text();
    expect(response.status(), `the form's create answered ${answer}`).toBe(201);
    sandboxId = (JSON.parse(answer) as SandboxBody).id;

    const created = row(sandboxId);
    await created.waitFor({ timeout: 30_000 });
    expect(await created.textContent()).toContain("purpose=console-test");
    await expect.poll(() => created.getByTestId("state").getAttribute("data-state")).toBe("running");
    expect(await created.textContent()).toContain("2 vCPU · 512 MiB");

    // What the form sent is what the server made.
    const body = (await api.get<SandboxBody & { expiresAt: string; createdAt: string }>(`/v1/sandboxes/${sandboxId}`))
      .body;
    expect(body).toMatchObject({ template: "base", resources: { vcpus: 2, memoryMb: 512 } });
    expect(body.metadata).toEqual({ purpose: "console-test" });
    const lifetime = Date.parse(body.expiresAt) - Date.parse(body.createdAt);
    expect(lifetime).toBeGreaterThan(9 * 60_000);
    expect(lifetime).toBeLessThanOrEqual(10 * 60_000 + 5_000);

    await row(other.id).waitFor();
    const search = page.getByTestId("filter-search");
    await search.fill("purpose=console-test");
    await row(other.id).waitFor({ state: "detached" });
    await row(sandboxId).waitFor();
    await search.fill("other");
    await row(sandboxId).waitFor({ state: "detached" });
    await row(other.id).waitFor();
    await search.fill("");
    await page.getByTestId("filter-state").selectOption("paused");
    await row(sandboxId).waitFor({ state: "detached" });
    await page.getByTestId("filter-state").selectOption("running");
    await row(sandboxId).waitFor();
    await page.getByTestId("filter-state").selectOption("active");

    // Live metrics of running sandboxes.
    await expect.poll(() => row(sandboxId).getByTestId("cpu").textContent(), { timeout: 30_000 }).toMatch(/^\d+\.\d%$/);
    expect(await row(sandboxId).getByTestId("memory").textContent()).toMatch(/^[\d.]+ (KiB|MiB|GiB)$/);
    await screenshot("list");
  });

  it("a list request that never answers does not stop the list: a sandbox made meanwhile shows up", async () => {
    // One GET of the list is held unanswered, as a dropped connection or a stalled proxy would leave it;
    // every later request passes. The list must go on polling past it.
    let held: Route | undefined;
    const isList = (url: URL) => url.pathname === "/v1/sandboxes";
    await page.route(isList, async (route) => {
      if (route.request().method() === "GET" && !held) {
        held = route;
        return;
      }
      await route.continue();
    });
    try {
      await expect.poll(() => held !== undefined, { timeout: 15_000 }).toBe(true);
      const late = await api.createSandbox({ metadata: { purpose: "made-while-a-poll-hangs" } });
      await row(late.id).waitFor({ timeout: 60_000 });
      expect((await api.del(`/v1/sandboxes/${late.id}`)).status).toBe(204);
    } finally {
      await page.unroute(isList);
      await held?.abort().catch(() => undefined);
    }
  });

  it("opens a live terminal: typing `echo hi` and Enter shows hi", async () => {
    await row(sandboxId).getByTestId("open-terminal").click();
    await page.locator("[data-testid=terminal-status][data-state=connected]").waitFor({ timeout: 30_000 });
    await page.locator(".xterm-rows").waitFor();
    // A login shell: its prompt arrives before anything is typed.
    await expect.poll(async () => (await terminalRows()).join("\n"), { timeout: 15_000 }).toMatch(/[#$] *$/m);
    await page.getByTestId("terminal").click();
    await page.keyboard.type("echo hi");
    await page.keyboard.press("Enter");
    await expect.poll(async () => (await terminalRows()).includes("hi"), { timeout: 15_000 }).toBe(true);
    // The line typed is echoed by the sandbox's tty, as a real terminal does.
    expect((await terminalRows()).some((r) => r.endsWith("echo hi"))).toBe(true);

    // It is a shell in the sandbox: arithmetic expands, and what it writes the API can read.
    await page.keyboard.type("echo $((6*7)) > /tmp/from-console; cat /tmp/from-console");
    await page.keyboard.press("Enter");
    await expect.poll(async () => (await terminalRows()).includes("42"), { timeout: 15_000 }).toBe(true);
    const file = await api.get<Buffer>(`/v1/sandboxes/${sandboxId}/files?path=/tmp/from-console`);
    expect(file.body.toString()).toBe("42\n");
    await screenshot("terminal");
  });

  it("file browser: an uploaded file is listed, lands in the sandbox and downloads back", async () => {
    await page.getByTestId("tab-files").click();
    await page.getByTestId("file-table").waitFor();
    const dir = await page.getByTestId("files-path").inputValue();
    const content = `uploaded from the console at ${new Date().toISOString()}\n`;
    await page.getByTestId("files-upload").setInputFiles({
      name: "hello-console.txt",
      mimeType: "text/plain",
      buffer: Buffer.from(content),
    });
    const listed = page.locator('[data-testid=file-row][data-name="hello-console.txt"]');
    await listed.waitFor({ timeout: 30_000 });
    expect(await listed.textContent()).toContain(`${Buffer.byteLength(content)} B`);

    const stored = await api.get<Buffer>(
      `/v1/sandboxes/${sandboxId}/files?path=${encodeURIComponent(`${dir.replace(/\/$/, "")}/hello-console.txt`)}`,
    );
    expect(stored.status).toBe(200);
    expect(stored.body.toString()).toBe(content);

    const [download] = await Promise.all([page.waitForEvent("download"), listed.getByTestId("file-download").click()]);
    expect(download.suggestedFilename()).toBe("hello-console.txt");
    const chunks: Buffer[] = [];
    for await (const chunk of (await download.createReadStream()) as AsyncIterable<Buffer>) chunks.push(chunk);
    expect(Buffer.concat(chunks).toString()).toBe(content);
    await screenshot("files");
  });

  it("shows the sandbox's events", async () => {
    await page.getByTestId("tab-events").click();
    await page.locator('[data-testid=event-row][data-event-type="sandbox.created"]').waitFor({ timeout: 15_000 });
    const sandboxes = await page
      .locator("[data-testid=event-row]")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-sandbox-id")));
    expect(new Set(sandboxes)).toEqual(new Set([sandboxId]));
  });

  it("pause, resume and destroy change the state shown", async () => {
    await page.getByTestId("tab-overview").click();
    const state = page.getByTestId("sandbox-id").getByTestId("state");
    await expect.poll(() => state.getAttribute("data-state")).toBe("running");
    await screenshot("sandbox");

    await page.getByTestId("pause").click();
    await expect.poll(() => state.getAttribute("data-state"), { timeout: 60_000 }).toBe("paused");
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandboxId}`)).body.status).toBe("paused");

    await page.getByTestId("resume").click();
    await expect.poll(() => state.getAttribute("data-state"), { timeout: 60_000 }).toBe("running");
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandboxId}`)).body.status).toBe("running");
    // Resumed with its files as they were.
    const exec = await api.exec(sandboxId, { command: "cat /tmp/from-console" });
    expect(exec.stdout).toBe("42\n");

    await page.getByTestId("destroy").click();
    await expect.poll(() => state.getAttribute("data-state"), { timeout: 60_000 }).toBe("destroyed");
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandboxId}`)).body.status).toBe("destroyed");

    // The list no longer shows it among live sandboxes; "all" still does, as destroyed.
    await page.getByRole("link", { name: "Sandboxes" }).first().click();
    await row(other.id).waitFor();
    await row(sandboxId).waitFor({ state: "detached" });
    await page.getByTestId("filter-state").selectOption("all");
    await expect.poll(() => row(sandboxId).getByTestId("state").getAttribute("data-state")).toBe("destroyed");
    expect((await api.del(`/v1/sandboxes/${other.id}`)).status).toBe(204);
  });

  it("the event log lists every transition of the organisation's sandboxes, newest first, filterable", async () => {
    await page.getByRole("link", { name: "Events" }).click();
    const ofSandbox = page.locator(`[data-testid=event-row][data-sandbox-id="${sandboxId}"]`);
    await expect
      .poll(() => ofSandbox.evaluateAll((rows) => rows.map((r) => r.getAttribute("data-event-type"))), {
        timeout: 15_000,
      })
      .toEqual(["sandbox.destroyed", "sandbox.resumed", "sandbox.paused", "sandbox.created"]);
    await page.locator(`[data-testid=event-row][data-sandbox-id="${other.id}"]`).first().waitFor();
    await screenshot("events");

    await page.getByTestId("event-filter-type").selectOption("sandbox.paused");
    await expect
      .poll(() =>
        page
          .locator("[data-testid=event-row]")
          .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-event-type"))),
      )
      .toEqual(["sandbox.paused"]);
    await page.getByTestId("event-filter-type").selectOption("");
    await page.getByTestId("event-filter-sandbox").fill(other.id);
    await expect
      .poll(() =>
        page
          .locator("[data-testid=event-row]")
          .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-event-type"))),
      )
      .toEqual(["sandbox.destroyed", "sandbox.created"]);
  });

  it("says 'not available' where a server has no metrics or event log (a 404)", async () => {
    // A server from before metrics and events answers these paths with its 404; the browser sees that.
    const noRoute = {
      status: 404,
      contentType: "application/json",
      body: JSON.stringify({ error: { code: "not_found", message: "No route" } }),
    };
    await page.route(/\/v1\/(events\?|sandboxes\/[^/]+\/metrics)/, (route) => route.fulfill(noRoute));
    try {
      const live = await api.createSandbox({ metadata: { purpose: "console-old-server" } });
      await page.getByRole("link", { name: "Sandboxes" }).first().click();
      await row(live.id).waitFor();
      await page.getByTestId("metrics-not-available").waitFor();
      expect(await row(live.id).getByTestId("cpu").textContent()).toBe("n/a");
      await row(live.id).getByTestId("sandbox-link").click();
      await page.getByTestId("not-available").waitFor();
      expect(await page.getByTestId("not-available").textContent()).toContain("Metrics are not available");
      await page.getByTestId("tab-events").click();
      await expect.poll(() => page.getByTestId("not-available").textContent()).toContain("event log is not available");
      // Everything else still works.
      await page.getByTestId("destroy").click();
      await expect
        .poll(() => page.getByTestId("sandbox-id").getByTestId("state").getAttribute("data-state"), { timeout: 60_000 })
        .toBe("destroyed");
    } finally {
      await page.unrouteAll();
    }
  });

  it("shows each sandbox's node; the Nodes view (admin key) lists the node ready, drain and undrain change its state", async () => {
    const admin = apiClient(server, ADMIN_KEY);
    const nodeAsApiSees = async (id: string) =>
      (await admin.get<{ nodes: ClusterNode[] }>("/v1/nodes")).body.nodes.find((n) => n.id === id);
    const live = await api.createSandbox({ metadata: { purpose: "console-nodes" } });
    try {
      // The sandbox's node, in the list and on its page.
      await page.getByRole("link", { name: "Sandboxes" }).first().click();
      await expect.poll(() => row(live.id).getByTestId("node").textContent()).toBe(live.node);
      await row(live.id).getByTestId("sandbox-link").click();
      await expect.poll(() => page.getByTestId("detail-node").locator("dd").textContent()).toBe(live.node);

      // A wrong admin key: the API's own message, and the console stays signed in with its API key.
      await page.getByTestId("nav-nodes").click();
      const refused = await apiClient(server, "sp_not-the-admin-key").get<ErrorBody>("/v1/nodes");
      expect(refused.status).toBe(401);
      await page.getByTestId("admin-key").fill("sp_not-the-admin-key");
      await page.getByTestId("admin-key-submit").click();
      await expect.poll(() => page.getByTestId("admin-key-error").textContent()).toContain(refused.body.error.message);
      expect(await page.evaluate('sessionStorage.getItem("sandpit.console.apiKey")')).toBe(server.apiKey);

      await page.getByTestId("admin-key").fill(ADMIN_KEY);
      await page.getByTestId("admin-key-submit").click();
      const node = page.locator(`[data-testid=node-row][data-node-id="${live.node}"]`);
      const state = node.getByTestId("state");
      await expect.poll(() => state.getAttribute("data-state")).toBe("ready");
      // What the row shows is what the API answers: capacity against allocation, sandboxes by status.
      const seen = (await nodeAsApiSees(live.node))!;
      expect(await node.getByTestId("node-vcpus").textContent()).toBe(`${seen.load.vcpus} / ${seen.capacity.vcpus}`);
      await expect.poll(() => node.getByTestId("node-sandboxes").textContent()).toContain("running");
      expect(await node.textContent()).toContain(seen.url);
      expect(await node.textContent()).toContain(seen.version);
      await screenshot("nodes");

      await node.getByTestId("drain").click();
      await expect.poll(() => state.getAttribute("data-state")).toBe("draining");
      expect((await nodeAsApiSees(live.node))?.state).toBe("draining");
      await node.getByTestId("undrain").click();
      await expect.poll(() => state.getAttribute("data-state")).toBe("ready");
      expect((await nodeAsApiSees(live.node))?.state).toBe("ready");

      // The admin key is kept for the tab, as the API key is: a reload shows the nodes at once.
      expect(await page.evaluate('sessionStorage.getItem("sandpit.console.adminKey")')).toBe(ADMIN_KEY);
      await page.reload();
      await expect.poll(() => state.getAttribute("data-state")).toBe("ready");
    } finally {
      await admin.post(`/v1/nodes/${live.node}/undrain`);
      await api.del(`/v1/sandboxes/${live.id}`);
    }
  });
});
