// Every route of the native API has an SDK method: the server's own OpenAPI document against the SDK's
// route table (`sdkRoutes`), whose every entry must name a method the SDK exports.
import * as sdk from "sandpit";
import { Meta, type OpenApiDocument, sdkRoutes } from "sandpit";
import { beforeAll, describe, expect, it } from "vitest";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
useTestServer((s) => {
  server = s;
});

type RouteTable = Readonly<Record<string, string>>;

/** The routes of an OpenAPI document as `"METHOD /path"`. */
function documentRoutes(paths: Record<string, Record<string, unknown>>): string[] {
  return Object.entries(paths).flatMap(([path, operations]) =>
    Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
  );
}

/** Resolves `"Class.static"` or `"Class#instance"` against the SDK's exports. */
function sdkMethodExists(name: string): boolean {
  const match = /^(\w+)([.#])(\w+)$/.exec(name);
  if (!match) return false;
  const owner = (sdk as Record<string, unknown>)[match[1]!];
  if (typeof owner !== "function") return false;
  const holder = match[2] === "." ? owner : (owner as { prototype: unknown }).prototype;
  return typeof (holder as Record<string, unknown>)[match[3]!] === "function";
}

/** What is wrong between the document and a route table: routes without a method, entries without a route or method. */
function coverageProblems(routes: string[], table: RouteTable) {
  return {
    withoutSdkMethod: routes.filter((route) => table[route] === undefined),
    staleEntries: Object.keys(table).filter((route) => !routes.includes(route)),
    unknownMethods: Object.entries(table)
      .filter(([, method]) => !sdkMethodExists(method))
      .map(([route, method]) => `${route} -> ${method}`),
  };
}

let routes: string[];
let doc: OpenApiDocument;
beforeAll(async () => {
  doc = await Meta.openApi({ apiUrl: server.url });
  routes = documentRoutes(doc.paths);
});

describe("route coverage", () => {
  it("has an SDK method for every route of the server's OpenAPI document, and no stale entry", () => {
    expect(routes.length).toBeGreaterThan(60);
    expect(coverageProblems(routes, sdkRoutes)).toEqual({ withoutSdkMethod: [], staleEntries: [], unknownMethods: [] });
  });

  it("fails for a route whose entry is removed, and for an entry naming a method the SDK lacks", () => {
    const { "POST /v1/sandboxes/{id}/fork": _fork, ...withoutFork } = sdkRoutes;
    expect(coverageProblems(routes, withoutFork).withoutSdkMethod).toEqual(["POST /v1/sandboxes/{id}/fork"]);
    const misnamed = { ...sdkRoutes, "POST /v1/sandboxes/{id}/fork": "Sandbox#spawn" };
    expect(coverageProblems(routes, misnamed).unknownMethods).toEqual([
      "POST /v1/sandboxes/{id}/fork -> Sandbox#spawn",
    ]);
  });
});

describe("API docs page", () => {
  const htmlEscaped = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  it("lists every route with its parameters, body fields and responses, self-contained, without a key", async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const page = await res.text();
    for (const route of routes) {
      const [method, path] = route.split(" ") as [string, string];
      expect(page, route).toContain(`${method}</span> <code>${htmlEscaped(path)}</code>`);
      const operation = doc.paths[path]![method.toLowerCase()] as { summary: string };
      expect(page, route).toContain(htmlEscaped(operation.summary).replace(/"/g, "&quot;").replace(/'/g, "&#39;"));
    }
    // A query parameter, a body field of the create request, a response status, a tag section.
    expect(page).toContain("<code>includeDestroyed</code>");
    expect(page).toContain("<code>snapshotId</code>");
    expect(page).toContain("<strong>201</strong>");
    expect(page).toContain('id="tag-snapshots"');
    // Nothing to fetch from elsewhere: no scripts, no external stylesheets or fonts.
    expect(page).not.toMatch(/<script|<link|https?:\/\/(?!127\.0\.0\.1)/);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
  });
});
