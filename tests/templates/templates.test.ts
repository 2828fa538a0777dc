import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { serverEntry } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer((s, a) => {
  server = s;
  api = a;
});

const sh = async (id: string, command: string) => (await api.exec(id, { command })).stdout.trim();

interface TemplateBody {
  name: string;
  kind: string;
  from: string | null;
  status: string;
  error: string | null;
}

/** POSTs with Accept: application/x-ndjson and returns the parsed event lines. */
async function buildStream(body: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${server.url}/v1/templates`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${server.apiKey}`,
      "content-type": "application/json",
      accept: "application/x-ndjson",
    },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function contextArchive(files: Record<string, string>): string {
  const dir = mkdtempSync("/var/tmp/sandpit-context-");
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  execFileSync("ln", ["-s", "/etc/shadow", path.join(dir, "escape")]);
  const archive = `${dir}.tar.gz`;
  execFileSync("tar", ["-czf", archive, "-C", dir, "."]);
  const data = readFileSync(archive).toString("base64");
  rmSync(dir, { recursive: true, force: true });
  rmSync(archive, { force: true });
  return data;
}

describe("runtime presets", () => {
  it("run their interpreter at the right version, by template or runtime name", async () => {
    const [python, node22, node24] = await Promise.all([
      api.createSandbox({ runtime: "python3.13" }),
      api.createSandbox({ template: "node22" }),
      api.createSandbox({ runtime: "node24" }),
    ]);
    expect(await sh(python.id, "python3 --version")).toMatch(/^Python 3\.13\.\d+$/);
    expect(python.template).toBe("python3.13");
    expect(await sh(node22.id, "node --version")).toMatch(/^v22\.\d+\.\d+$/);
    expect(await sh(node24.id, "node --version; npm --version")).toMatch(/^v24\.\d+\.\d+\n\d+\.\d+\.\d+$/);
    // npm works for real: it installs a package from a local tarball it packs itself.
    expect(
      await sh(
        node24.id,
        "cd /tmp && mkdir p && cd p && npm init -y >/dev/null && node -e 'console.log(require(\"./package.json\").name)'",
      ),
    ).toBe("p");
    const listed = await api.get<{ templates: TemplateBody[] }>("/v1/templates");
    expect(listed.body.templates.map((t) => [t.name, t.kind, t.from, t.status])).toEqual(
      expect.arrayContaining([
        ["base", "builtin", null, "ready"],
        ["python3.13", "builtin", "base", "ready"],
        ["node22", "builtin", "base", "ready"],
        ["node24", "builtin", "base", "ready"],
      ]),
    );
    await Promise.all([python, node22, node24].map((s) => api.del(`/v1/sandboxes/${s.id}`)));
  });

  it("refuses a runtime that contradicts the template", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", { runtime: "node24", template: "node22" });
    expect(res.status).toBe(400);
    expect(res.body.error.details?.fields?.[0]).toMatchObject({ field: "runtime", rule: "conflict" });
    const unknown = await api.post<ErrorBody>("/v1/sandboxes", { runtime: "ruby3" });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details?.fields?.[0]?.field).toBe("runtime");
  });
});

describe("custom templates", () => {
  it("builds a Dockerfile with RUN and COPY in gVisor and starts sandboxes from the result", async () => {
    const dockerfile = [
      "FROM node24",
      'ENV APP_HOME=/srv/app GREETING="hello there"',
      "RUN useradd -m -u 1234 app && rm /etc/issue && echo built-by-run > /srv/marker && uname -a",
      "COPY app/ $APP_HOME/",
      "COPY notes.txt /srv/",
      'RUN chown -R app:app $APP_HOME && echo "run output line"',
      "WORKDIR /srv/app",
      "USER app",
      'CMD ["node", "server.js"]',
    ].join("\n");
    const context = contextArchive({
      "app/server.js":
        "require('fs').writeFileSync('/tmp/main-started', process.env.GREETING + ' ' + process.getuid());\nsetInterval(() => {}, 1000);\n",
      "app/config/settings.json": '{"port": 3000}\n',
      "notes.txt": "copied notes\n",
    });
    const events = await buildStream({ name: "web-app", description: "test app", dockerfile, context });
    const logs = events.filter((e) => e.type === "log").map((e) => String(e.line));
    const last = events.at(-1)!;
    expect(last.type, JSON.stringify(events.slice(-5))).toBe("done");
    // RUN output streams as build log lines; RUN ran under gVisor.
    expect(logs).toContain("run output line");
    expect(logs.some((l) => l.includes("Linux") && l.includes("4.4.0"))).toBe(true);
    expect(events.some((e) => e.type === "progress" && String(e.message).includes("RUN useradd"))).toBe(true);
    expect(last.template).toMatchObject({ name: "web-app", kind: "custom", from: "node24", status: "ready" });

    const sbx = await api.createSandbox({ template: "web-app" });
    expect(sbx).toMatchObject({ template: "web-app", cwd: "/srv/app", user: "app" });
    expect(sbx.mainCommandId).toMatch(/^cmd_/);
    expect(await sh(sbx.id, "pwd; whoami; echo $GREETING; node --version | cut -c1-3")).toBe(
      "/srv/app\napp\nhello there\nv24",
    );
    expect(await sh(sbx.id, "cat /srv/marker /srv/notes.txt config/settings.json")).toBe(
      'built-by-run\ncopied notes\n{"port": 3000}',
    );
    // A file the Dockerfile deleted from the parent layer stays deleted; a symlink out of the context was not followed.
    expect(await sh(sbx.id, "test -e /etc/issue && echo present || echo gone")).toBe("gone");
    expect(await sh(sbx.id, "ls -A /srv/app")).toBe("config\nserver.js");
    // The CMD runs as the main process, as the template's user, with its environment.
    const started = await waitFor(
      async () => (await sh(sbx.id, "cat /tmp/main-started 2>/dev/null")) || undefined,
      20_000,
      "the main process",
    );
    expect(started).toBe("hello there 1234");
    const main = await api.get<{ status: string; command: string[] }>(
      `/v1/sandboxes/${sbx.id}/commands/${sbx.mainCommandId}`,
    );
    expect(main.body).toMatchObject({ status: "running", command: ["node", "server.js"] });
    // The build sandbox is gone.
    const all = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes");
    expect(all.body.sandboxes.filter((s) => s.metadata["sandpit.template-build"])).toHaveLength(0);

    // Another organisation sees neither the template nor can start from it.
    const { createApiKey } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
    const other = await createApiKey({ dataDir: server.dataDir, org: "template-intruder" });
    const intruder = (await import("../helpers/api.js")).apiClient(server, other.key);
    expect((await intruder.get("/v1/templates/web-app")).status).toBe(404);
    expect((await intruder.post("/v1/sandboxes", { template: "web-app" })).status).toBe(404);
    const theirs = await intruder.get<{ templates: TemplateBody[] }>("/v1/templates");
    expect(theirs.body.templates.map((t) => t.name)).not.toContain("web-app");

    await api.del(`/v1/sandboxes/${sbx.id}`);
    expect((await api.del("/v1/templates/web-app")).status).toBe(204);
    expect((await api.get("/v1/templates/web-app")).status).toBe(404);
  });

  it("reports a failing RUN with its line and keeps no template", async () => {
    const events = await buildStream({ name: "broken", dockerfile: "FROM base\nRUN echo about to fail && exit 3\n" });
    expect(events.some((e) => e.type === "log" && e.line === "about to fail")).toBe(true);
    const last = events.at(-1)!;
    expect(last.type).toBe("error");
    expect(String(last.message)).toMatch(/line 2: RUN echo about to fail && exit 3 exited with 3/);
    const t = await api.get<TemplateBody>("/v1/templates/broken");
    expect(t.body.status).toBe("failed");
    expect((await api.post<ErrorBody>("/v1/sandboxes", { template: "broken" })).status).toBe(409);
  });

  it("rejects a Dockerfile it cannot build, naming the field and line", async () => {
    const res = await api.post<ErrorBody>("/v1/templates", { name: "bad", dockerfile: "FROM base\nFROBNICATE x\n" });
    expect(res.status).toBe(400);
    expect(res.body.error.details?.fields?.[0]).toMatchObject({ field: "dockerfile", rule: "syntax" });
    expect(res.body.error.message).toMatch(/line 2: FROBNICATE is not supported/);
    const builtin = await api.post<ErrorBody>("/v1/templates", { name: "base", dockerfile: "FROM base\n" });
    expect(builtin.status).toBe(409);
  });
});
