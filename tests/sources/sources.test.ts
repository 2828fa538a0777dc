import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody } from "../helpers/api.js";
import { gitRef, type LoopbackHttp, makeGitRepo, startLoopbackHttp } from "../helpers/loopback-http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let http: LoopbackHttp;
let server: TestServer;
let api: ReturnType<typeof apiClient>;
let commits: string[];

beforeAll(async () => {
  http = await startLoopbackHttp();
  commits = makeGitRepo(http, "app", [
    { "README.md": "version one\n", "src/main.py": "print('v1')\n" },
    { "README.md": "version two\n" },
    { "README.md": "version three\n" },
  ]);
  gitRef(http, "app", "tag", "v1.0", commits[0]!);
  gitRef(http, "app", "branch", "stable", commits[1]!);

  // A tarball with a subdirectory, an executable, a symlink and a FIFO (which must not arrive).
  const content = mkdtempSync("/var/tmp/sandpit-tarball-");
  mkdirSync(path.join(content, "bin"));
  writeFileSync(path.join(content, "bin/run.sh"), "#!/bin/sh\necho tarball-run\n", { mode: 0o755 });
  writeFileSync(path.join(content, "data.txt"), "from the tarball\n");
  execFileSync("ln", ["-s", "data.txt", path.join(content, "link.txt")]);
  execFileSync("mkfifo", [path.join(content, "pipe")]);
  execFileSync("tar", ["-czf", path.join(http.filesDir, "app.tar.gz"), "-C", content, "."]);
  writeFileSync(path.join(http.filesDir, "not-a-tarball.tar.gz"), "just text\n");
  rmSync(content, { recursive: true, force: true });

  // Only this loopback server is allowed; any other non-public address stays refused.
  server = await startTestServer({ SANDPIT_OUTBOUND_ALLOWED_HOSTS: new URL(http.url).host });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await http?.close();
});

const sh = async (id: string, command: string) => (await api.exec(id, { command })).stdout.trim();

async function createFails(body: Record<string, unknown>) {
  const before = (await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes?includeDestroyed=true")).body.sandboxes.length;
  const res = await api.post<ErrorBody>("/v1/sandboxes", body);
  const after = (await api.get<{ sandboxes: unknown[] }>("/v1/sandboxes?includeDestroyed=true")).body.sandboxes.length;
  // A source that cannot be fetched never leaves a sandbox behind.
  expect(after).toBe(before);
  return res;
}

describe("sources", () => {
  it("clones a git repository into the working directory before create returns", async () => {
    const sbx = await api.createSandbox({ source: { type: "git", url: `${http.url}/git/app.git` } });
    expect(await sh(sbx.id, "cat README.md")).toBe("version three");
    expect(await sh(sbx.id, "cat src/main.py")).toBe("print('v1')");
    expect(await sh(sbx.id, "git log --format=%H | head -1")).toBe(commits[2]);
    expect(await sh(sbx.id, "git rev-list --count HEAD")).toBe("3");
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });

  it("checks out a tag, a branch or a commit, shallow when asked", async () => {
    const [tag, branch, commit, shallow] = await Promise.all([
      api.createSandbox({ source: { type: "git", url: `${http.url}/git/app.git`, ref: "v1.0" } }),
      api.createSandbox({ source: { type: "git", url: `${http.url}/git/app.git`, ref: "stable" } }),
      api.createSandbox({ source: { type: "git", url: `${http.url}/git/app.git`, ref: commits[1], depth: 1 } }),
      api.createSandbox({ source: { type: "git", url: `${http.url}/git/app.git`, depth: 1 }, cwd: "/srv/app" }),
    ]);
    expect(await sh(tag.id, "cat README.md")).toBe("version one");
    expect(await sh(branch.id, "cat README.md")).toBe("version two");
    expect(await sh(commit.id, "cat README.md; git rev-parse HEAD; git rev-list --count HEAD")).toBe(
      `version two\n${commits[1]}\n1`,
    );
    expect(shallow.cwd).toBe("/srv/app");
    expect(await sh(shallow.id, "pwd; cat README.md; git rev-list --count HEAD")).toBe("/srv/app\nversion three\n1");
    await Promise.all([tag, branch, commit, shallow].map((s) => api.del(`/v1/sandboxes/${s.id}`)));
  });

  it("answers 422 naming the source for a bad ref or a missing repository", async () => {
    const badRef = await createFails({
      source: { type: "git", url: `${http.url}/git/app.git`, ref: "no-such-branch" },
    });
    expect(badRef.status).toBe(422);
    expect(badRef.body.error.code).toBe("source_failed");
    expect(badRef.body.error.message).toMatch(/git source .*app\.git.*no-such-branch/);
    expect(badRef.body.error.details).toMatchObject({ field: "source" });

    const missing = await createFails({ source: { type: "git", url: `${http.url}/git/missing.git` } });
    expect(missing.status).toBe(422);
    expect(missing.body.error.message).toMatch(/missing\.git/);
  });

  it("unpacks a tarball into the working directory, without special files", async () => {
    const sbx = await api.createSandbox({ source: { type: "tarball", url: `${http.url}/files/app.tar.gz` } });
    expect(await sh(sbx.id, "cat data.txt; ./bin/run.sh; readlink link.txt")).toBe(
      "from the tarball\ntarball-run\ndata.txt",
    );
    expect(await sh(sbx.id, "test -e pipe && echo present || echo absent")).toBe("absent");
    // Through a redirect on the same allowed host too.
    const redirected = await api.createSandbox({
      source: { type: "tarball", url: `${http.url}/redirect/files/app.tar.gz` },
    });
    expect(await sh(redirected.id, "cat data.txt")).toBe("from the tarball");
    await Promise.all([sbx, redirected].map((s) => api.del(`/v1/sandboxes/${s.id}`)));
  });

  it("answers 422 for something that is not a tarball, or is not there", async () => {
    const notTar = await createFails({ source: { type: "tarball", url: `${http.url}/files/not-a-tarball.tar.gz` } });
    expect(notTar.status).toBe(422);
    expect(notTar.body.error.message).toMatch(/tarball source .*not a tar archive/);
    const missing = await createFails({ source: { type: "tarball", url: `${http.url}/files/none.tar.gz` } });
    expect(missing.status).toBe(422);
    expect(missing.body.error.message).toMatch(/HTTP 404/);
  });

  it("does not fetch from the host, its LAN or a metadata service on a user's behalf", async () => {
    // Another port on loopback (the API server itself), the metadata address, a redirect to loopback:
    // each is refused before any connection is made.
    const apiPort = new URL(server.url).port;
    const attempts = [
      { type: "tarball", url: `http://127.0.0.1:${apiPort}/v1/sandboxes` },
      { type: "git", url: `http://127.0.0.1:${apiPort}/x.git` },
      { type: "tarball", url: "http://169.254.169.254/latest/meta-data" },
      { type: "tarball", url: "http://10.0.0.1/x.tar.gz" },
      { type: "tarball", url: "http://localhost:1/x.tar.gz" },
      { type: "tarball", url: `${http.url}/redirect/http://127.0.0.1:${apiPort}/` },
    ];
    for (const source of attempts) {
      const res = await createFails({ source });
      expect(res.status, source.url).toBe(422);
      expect(res.body.error.message, source.url).toMatch(/non-public address|redirect/);
    }
    const notHttp = await api.post<ErrorBody>("/v1/sandboxes", { source: { type: "git", url: "file:///etc" } });
    expect(notHttp.status).toBe(400);
    expect(notHttp.body.error.details?.fields?.[0]?.field).toBe("source.url");
  });

  it("starts from a snapshot given as a source", async () => {
    const origin = await api.createSandbox();
    await api.put(`/v1/sandboxes/${origin.id}/files?path=/workspace/state.txt`, "snapshotted");
    const snap = await api.post<{ id: string }>(`/v1/sandboxes/${origin.id}/snapshots`, {});
    expect(snap.status).toBe(201);
    const child = await api.createSandbox({ source: { type: "snapshot", snapshotId: snap.body.id } });
    expect(await sh(child.id, "cat /workspace/state.txt")).toBe("snapshotted");
    const conflicting = await api.post<ErrorBody>("/v1/sandboxes", {
      source: { type: "snapshot", snapshotId: snap.body.id },
      runtime: "node24",
    });
    expect(conflicting.status).toBe(400);
    expect(conflicting.body.error.details?.fields?.[0]?.field).toBe("runtime");
    await Promise.all([origin, child].map((s: SandboxBody) => api.del(`/v1/sandboxes/${s.id}`)));
    await api.del(`/v1/snapshots/${snap.body.id}`);
  });
});
