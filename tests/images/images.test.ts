// Sandboxes from OCI images the test builds itself (busybox layers, no Docker) and pushes into real
// registries on loopback (Debian's docker-registry): open, htpasswd (Basic) and token (Bearer) auth.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { busyboxLayer, layerTree, MEDIA, pushImage, startRegistry, type TestRegistry } from "../helpers/registry.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");
const RIGHT = { username: "puller", password: "s3cret-Pa55" };
const WRONG = { username: "puller", password: "not-the-password" };

let work: string;
let open: TestRegistry;
let basic: TestRegistry;
let bearer: TestRegistry;
let server: TestServer;
let api: ReturnType<typeof apiClient>;
let base: string;
let top: string;

interface ImageBody {
  uri: string;
  reference: string;
  digest: string | null;
  status: string;
  progress: { phase: string; layersDone: number; layersTotal: number; bytesDone: number; bytesTotal: number } | null;
  layers: number | null;
  sizeBytes: number | null;
  pullCount: number;
}

/** The top layer: deletes /data/gone.txt, makes /opt/dir opaque, adds the app owned by `app`. */
function appLayer(): string {
  const dir = layerTree(
    work,
    {
      "data/.wh.gone.txt": "",
      "opt/dir/.wh..wh..opq": "",
      "opt/dir/c.txt": "only this one\n",
      "app/start.sh": [
        '#!/bin/sh\necho "main $GREETING $(pwd) $(id -u) $1" > /app/main.out\nexec sleep 100000\n',
        0o755,
      ],
    },
    { app: 1000, "app/start.sh": 1000 },
  );
  return dir;
}

const imageConfig = {
  Env: ["PATH=/bin", "GREETING=hello-from-the-image"],
  WorkingDir: "/app",
  User: "app",
  Entrypoint: ["/bin/sh", "/app/start.sh"],
  Cmd: ["first-arg"],
};

/** A one-layer image whose content is unique to `name` (so that nothing of it is cached yet). */
async function pushUniqueImage(registry: TestRegistry, repository: string, extraBytes = 0) {
  const extra = layerTree(work, { [`unique/${repository.replace(/\//g, "_")}.txt`]: `${repository} ${Date.now()}\n` });
  if (extraBytes > 0) {
    execFileSync("sh", ["-c", `head -c ${extraBytes} /dev/urandom > ${path.join(extra, "unique/random.bin")}`]);
  }
  return pushImage(registry, repository, "1", [base, top, extra], imageConfig);
}

const sh = async (id: string, command: string) => (await api.exec(id, { command })).stdout.trim();

async function createFails(body: Record<string, unknown>): Promise<{ status: number; body: ErrorBody }> {
  const res = await api.post<ErrorBody>("/v1/sandboxes", body);
  return { status: res.status, body: res.body };
}

beforeAll(async () => {
  work = mkdtempSync("/var/tmp/sandpit-images-test-");
  base = busyboxLayer(work);
  top = appLayer();
  [open, basic, bearer] = await Promise.all([
    startRegistry(),
    startRegistry({ auth: { kind: "htpasswd", credentials: RIGHT } }),
    startRegistry({ auth: { kind: "token", credentials: RIGHT } }),
  ]);
  await pushImage(open, "test/tiny", "1", [base, top], imageConfig);
  // The same image as Docker Hub's `library/tiny`, served by the mirror.
  await pushImage(open, "library/tiny", "1", [base, top], imageConfig);
  await pushImage(basic, "private/tiny", "1", [base, top], imageConfig);
  await pushImage(bearer, "private/tiny", "1", [base, top], imageConfig);
  server = await startTestServer({
    SANDPIT_OUTBOUND_ALLOWED_HOSTS: [open, basic, bearer].flatMap((r) => r.allowedHosts).join(","),
    SANDPIT_REGISTRY_MIRRORS: `docker.io=${open.url}`,
  });
  api = apiClient(server);
}, 300_000);

afterAll(async () => {
  await server?.close();
  await Promise.all([open, basic, bearer].map((r) => r?.close()));
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("sandboxes from images", () => {
  it("runs the image's entrypoint with its Env, WorkingDir and User, over its layers and whiteouts", async () => {
    const uri = `${open.host}/test/tiny:1`;
    const sbx = await api.createSandbox({ image: { uri } });
    expect(sbx.template).toBe(`image:${uri}`);
    expect(sbx.cwd).toBe("/app");
    expect(sbx.user).toBe("app");
    expect(sbx.mainCommandId).not.toBeNull();
    // The entrypoint + cmd runs as the main process, as `app`, in /app, with the image's variables.
    const out = await waitFor(
      async () => {
        const r = await api.exec(sbx.id, { args: ["cat", "/app/main.out"] });
        return r.exitCode === 0 ? r.stdout.trim() : undefined;
      },
      20_000,
      "the main process's output",
    );
    expect(out).toBe("main hello-from-the-image /app 1000 first-arg");
    const main = await api.get<{ status: string }>(`/v1/sandboxes/${sbx.id}/commands/${sbx.mainCommandId}`);
    expect(main.body.status).toBe("running");
    // Commands get the same defaults.
    expect(await sh(sbx.id, 'echo "$GREETING"; pwd; id -u; id -un')).toBe("hello-from-the-image\n/app\n1000\napp");
    // The second layer's whiteout deleted a file of the first; its opaque directory hid the first's files.
    expect(await sh(sbx.id, "ls /data")).toBe("keep.txt");
    expect(await sh(sbx.id, "ls /opt/dir")).toBe("c.txt");
    expect(await sh(sbx.id, "stat -c '%U %a' /app/start.sh")).toBe("app 755");
    // Writes go to the sandbox's own disk; the shared image stays as it was.
    await sh(sbx.id, "echo mine > /app/extra.txt");
    const other = await api.createSandbox({
      image: { uri },
      env: { GREETING: "overridden" },
      cwd: "/tmp",
      user: "root",
      entrypoint: [],
    });
    expect(other.mainCommandId).toBeNull();
    expect(await sh(other.id, 'echo "$GREETING"; pwd; id -u; ls /app')).toBe("overridden\n/tmp\n0\nstart.sh");
    await Promise.all([api.del(`/v1/sandboxes/${sbx.id}`), api.del(`/v1/sandboxes/${other.id}`)]);
  });

  it("pulls an uncached image once for two concurrent creates", async () => {
    const pushed = await pushUniqueImage(open, "test/fresh");
    const uri = `${open.host}/test/fresh:1`;
    const [a, b] = await Promise.all([
      api.post<SandboxBody>("/v1/sandboxes", { image: { uri }, entrypoint: [] }),
      api.post<SandboxBody>("/v1/sandboxes", { image: { uri }, entrypoint: [] }),
    ]);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(await sh(a.body.id, "ls /unique")).toBe("test_fresh.txt");
    // The new layer and the config left the registry exactly once; the two layers it shares with
    // test/tiny came from the cache.
    const [shared1, shared2, unique] = pushed.layerDigests;
    expect(open.blobGets("test/fresh", unique)).toBe(1);
    expect(open.blobGets("test/fresh", shared1) + open.blobGets("test/fresh", shared2)).toBe(0);
    expect(open.blobGets("test/fresh")).toBe(2);
    const image = await api.get<ImageBody>(`/v1/images/${encodeURIComponent(uri)}`);
    expect(image.status).toBe(200);
    expect(image.body).toMatchObject({ status: "ready", digest: pushed.digest, layers: 3, pullCount: 1 });
    // A third create uses the cache: the registry is asked for the manifest only.
    const c = await api.createSandbox({ image: { uri }, entrypoint: [] });
    expect(open.blobGets("test/fresh")).toBe(2);
    const list = await api.get<{ images: ImageBody[] }>("/v1/images");
    expect(list.body.images.find((i) => i.uri === uri)?.pullCount).toBe(1);
    await Promise.all([a.body.id, b.body.id, c.id].map((id) => api.del(`/v1/sandboxes/${id}`)));
  });

  it("streams pull progress as NDJSON, and the CLI prints it", async () => {
    await pushUniqueImage(open, "test/big", 6 * 1024 * 1024);
    const uri = `${open.host}/test/big:1`;
    const res = await fetch(`${server.url}/v1/images/pull`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${server.apiKey}`,
        "content-type": "application/json",
        accept: "application/x-ndjson",
      },
      body: JSON.stringify({ uri }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const events = (await res.text())
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown> & { type: string });
    const progress = events.filter((e) => e.type === "progress") as unknown as NonNullable<ImageBody["progress"]>[];
    const last = events.at(-1) as { type: string; image: ImageBody };
    expect(last.type).toBe("done");
    expect(last.image).toMatchObject({ status: "ready", layers: 3 });
    expect(progress.length).toBeGreaterThan(1);
    const total = progress[0]!.bytesTotal;
    expect(total).toBeGreaterThan(6 * 1024 * 1024);
    expect(progress.at(-1)).toMatchObject({ phase: "done", layersDone: 3, layersTotal: 3, bytesDone: total });
    // Bytes grew while the big layer arrived (the first two layers are cached from the other images).
    const bytes = progress.map((p) => p.bytesDone);
    expect(bytes).toEqual([...bytes].sort((x, y) => x - y));
    expect(bytes.some((n) => n > 0 && n < total)).toBe(true);

    await pushUniqueImage(open, "test/cli", 2 * 1024 * 1024);
    const cliUri = `${open.host}/test/cli:1`;
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [cliEntry, "images", "pull", cliUri], {
        env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => {
        stdout += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        stderr += c.toString();
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/downloading \d+%: \d\/3 layers/);
    expect(run.stderr).toMatch(/done 100%: 3\/3 layers/);
    expect(run.stdout).toMatch(new RegExp(`^${open.host}/test/cli:1 ready sha256:[0-9a-f]{64}`));
  });

  it("answers a clear 4xx for private images without or with wrong credentials (Basic and Bearer)", async () => {
    for (const registry of [basic, bearer]) {
      const uri = `${registry.host}/private/tiny:1`;
      const missing = await createFails({ image: { uri }, entrypoint: [] });
      expect(missing.status).toBe(403);
      expect(missing.body.error.code).toBe("image_auth_failed");
      expect(missing.body.error.details?.fields?.[0]?.field).toBe("image.auth");
      expect(missing.body.error.message).toMatch(/needs credentials/);
      const wrong = await createFails({ image: { uri, auth: WRONG }, entrypoint: [] });
      expect(wrong.status).toBe(403);
      expect(wrong.body.error.code).toBe("image_auth_failed");
      expect(wrong.body.error.message).toMatch(/refused the credentials/);
      expect(JSON.stringify(wrong.body)).not.toContain(WRONG.password);
      const sbx = await api.createSandbox({ image: { uri, auth: RIGHT } });
      expect(await sh(sbx.id, "echo $GREETING; ls /data")).toBe("hello-from-the-image\nkeep.txt");
      await api.del(`/v1/sandboxes/${sbx.id}`);
      // The image is cached now, yet a create without credentials is still refused by the registry.
      expect((await createFails({ image: { uri }, entrypoint: [] })).status).toBe(403);
    }
    // Credentials are never written to the server's database or logs.
    const logs = execFileSync("sh", [
      "-c",
      `cat /var/tmp/sandpit-test-logs/${server.netPrefix}.log; sqlite3 ${server.dataDir}/sandpit.db .dump`,
    ]).toString();
    expect(logs).not.toContain(RIGHT.password);
    expect(logs).not.toContain(WRONG.password);
  });

  it("answers 404 image_not_found for an unknown image and 400 for a malformed reference", async () => {
    const missing = await createFails({ image: { uri: `${open.host}/test/tiny:nope` } });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe("image_not_found");
    expect(missing.body.error.details?.fields?.[0]?.field).toBe("image.uri");
    const malformed = await createFails({ image: { uri: "Not/Valid:tag" } });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.details?.fields?.[0]?.field).toBe("image.uri");
  });

  it("pulls Docker Hub names through the configured mirror", async () => {
    const sbx = await api.createSandbox({ image: { uri: "tiny:1" }, entrypoint: [] });
    expect(sbx.template).toBe("image:tiny:1");
    expect(await sh(sbx.id, "cat /data/keep.txt")).toBe("kept");
    const image = await api.get<ImageBody>(`/v1/images/${encodeURIComponent("docker.io/library/tiny:1")}`);
    expect(image.body.reference).toBe("docker.io/library/tiny:1");
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });

  it("chooses linux/amd64 from an OCI index, with uncompressed OCI layers", async () => {
    const amd = await pushImage(
      open,
      "test/multi",
      "amd64",
      [base, top],
      // A numeric USER that /etc/passwd does not know runs with that uid (and gid), as in Docker.
      { ...imageConfig, Env: ["PATH=/bin", "ARCH=amd64"], User: "4242:4242" },
      { format: "oci" },
    );
    const arm = await pushImage(
      open,
      "test/multi",
      "arm64",
      [base],
      { Env: ["ARCH=arm64"] },
      { format: "oci", architecture: "arm64" },
    );
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        {
          mediaType: MEDIA.ociManifest,
          digest: arm.digest,
          size: JSON.stringify(arm.manifest).length,
          platform: { os: "linux", architecture: "arm64" },
        },
        {
          mediaType: MEDIA.ociManifest,
          digest: amd.digest,
          size: JSON.stringify(amd.manifest).length,
          platform: { os: "linux", architecture: "amd64" },
        },
      ],
    };
    const indexDigest = await open.pushManifest("test/multi", "1", index, MEDIA.ociIndex);
    const sbx = await api.createSandbox({ image: { uri: `${open.host}/test/multi@${indexDigest}` }, entrypoint: [] });
    expect(await sh(sbx.id, "echo $ARCH; ls /opt/dir; id -u; id -g")).toBe("amd64\nc.txt\n4242\n4242");
    const image = await api.get<ImageBody>(
      `/v1/images/${encodeURIComponent(`${open.host}/test/multi@${indexDigest}`)}`,
    );
    expect(image.body.digest).toBe(amd.digest);
    await api.del(`/v1/sandboxes/${sbx.id}`);
    // An image only for another platform is refused, naming why.
    const armOnly = await createFails({ image: { uri: `${open.host}/test/multi:arm64` } });
    expect(armOnly.status).toBe(422);
    expect(armOnly.body.error.code).toBe("image_invalid");
    expect(armOnly.body.error.message).toMatch(/linux\/arm64/);
  });

  it("builds a template FROM an image", async () => {
    const res = await fetch(`${server.url}/v1/templates`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${server.apiKey}`,
        "content-type": "application/json",
        accept: "application/x-ndjson",
      },
      body: JSON.stringify({
        name: "from-image",
        // The image's USER app applies to RUN, as in Docker: root writes /built.txt.
        dockerfile: `FROM ${basic.host}/private/tiny:1\nUSER root\nRUN echo built > /built.txt\nUSER app\nENV STAGE=two\n`,
        fromAuth: RIGHT,
        resources: { vcpus: 1, memoryMb: 512, diskMb: 1024 },
      }),
    });
    const events = (await res.text())
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; message?: string });
    expect(events.at(-1), JSON.stringify(events.filter((e) => e.type === "error"))).toMatchObject({ type: "done" });
    const sbx = await api.createSandbox({ template: "from-image" });
    expect(await sh(sbx.id, "cat /built.txt; echo $GREETING $STAGE; pwd; id -un")).toBe(
      "built\nhello-from-the-image two\n/app\napp",
    );
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });
});
