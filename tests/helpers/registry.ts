import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, createSign } from "node:crypto";
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import path from "node:path";
import { gzipSync } from "node:zlib";

/** Docker Registry v2 media types the test images use. */
export const MEDIA = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

export const sha256 = (data: Buffer | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

export interface Credentials {
  username: string;
  password: string;
}

export interface TestRegistry {
  /** host:port of the registry, e.g. 127.0.0.1:41234 (what image references start with). */
  host: string;
  url: string;
  /** Hosts the Sandpit server must be allowed to reach for this registry (its token service too). */
  allowedHosts: string[];
  /** Everything the registry logged so far (its access log included). */
  log(): string;
  /** How many times a blob of `repository` was fetched with GET. */
  blobGets(repository: string, digest?: string): number;
  /** Uploads a blob (monolithic upload: POST then PUT with the digest). */
  pushBlob(repository: string, data: Buffer): Promise<{ digest: string; size: number }>;
  /** Uploads a manifest under a tag or digest; returns its digest. */
  pushManifest(repository: string, reference: string, manifest: unknown, mediaType: string): Promise<string>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

/**
 * A token service in the shape of Docker Hub's (`GET /token?service&scope` with optional Basic
 * credentials → `{token}`): it signs JWTs with a throw-away certificate the registry trusts. Only the
 * right credentials get access to the repositories; anonymous callers get a token without any.
 */
async function startTokenService(dir: string, issuer: string, service: string, credentials: Credentials) {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      path.join(dir, "token.key"),
      "-out",
      path.join(dir, "token.crt"),
      "-subj",
      "/CN=sandpit-test-token",
      "-days",
      "1",
    ],
    { stdio: "ignore" },
  );
  const key = readFileSync(path.join(dir, "token.key"), "utf8");
  const certDer = execFileSync("openssl", ["x509", "-in", path.join(dir, "token.crt"), "-outform", "DER"]);
  const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const authorization = req.headers.authorization;
    if (authorization !== undefined && authorization !== expected) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"details":"wrong credentials"}');
      return;
    }
    const access = (url.searchParams.getAll("scope") ?? []).flatMap((scope) => {
      const [type, name, actions] = scope.split(":");
      return authorization ? [{ type, name, actions: (actions ?? "").split(",") }] : [];
    });
    const nowSec = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", x5c: [certDer.toString("base64")] }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: authorization ? credentials.username : "",
        aud: service,
        exp: nowSec + 300,
        nbf: nowSec - 10,
        iat: nowSec,
        jti: Math.random().toString(36).slice(2),
        access,
      }),
    );
    const signature = createSign("RSA-SHA256").update(`${header}.${claims}`).sign(key).toString("base64url");
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ token: `${header}.${claims}.${signature}` }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}/token`,
    host: `127.0.0.1:${port}`,
    cert: path.join(dir, "token.crt"),
  };
}

/**
 * Debian's `docker-registry` (the CNCF distribution registry) on a loopback port with its own config and
 * storage: open, with htpasswd (Basic) auth, or with token (Bearer) auth through a token service the
 * test runs. Pushes go through the registry's HTTP API like `docker push` does.
 */
export async function startRegistry(
  opts: { auth?: { kind: "htpasswd" | "token"; credentials: Credentials } } = {},
): Promise<TestRegistry> {
  const dir = mkdtempSync("/var/tmp/sandpit-registry-");
  const port = await freePort();
  let tokenService: Awaited<ReturnType<typeof startTokenService>> | undefined;
  let authConfig = "";
  if (opts.auth?.kind === "htpasswd") {
    const { username, password } = opts.auth.credentials;
    const line = execFileSync("htpasswd", ["-Bbn", username, password]).toString().trim();
    writeFileSync(path.join(dir, "htpasswd"), `${line}\n`);
    authConfig = `auth:\n  htpasswd:\n    realm: sandpit-test\n    path: ${path.join(dir, "htpasswd")}\n`;
  } else if (opts.auth?.kind === "token") {
    tokenService = await startTokenService(dir, "sandpit-test-issuer", "sandpit-test-registry", opts.auth.credentials);
    authConfig =
      "auth:\n  token:\n" +
      `    realm: ${tokenService.url}\n    service: sandpit-test-registry\n` +
      `    issuer: sandpit-test-issuer\n    rootcertbundle: ${tokenService.cert}\n`;
  }
  writeFileSync(
    path.join(dir, "config.yml"),
    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n" +
      `storage:\n  filesystem:\n    rootdirectory: ${path.join(dir, "data")}\n  delete:\n    enabled: true\n` +
      `http:\n  addr: 127.0.0.1:${port}\n  secret: sandpit-test-secret\n${authConfig}`,
  );
  const child: ChildProcess = spawn("docker-registry", ["serve", path.join(dir, "config.yml")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout!.on("data", (c: Buffer) => {
    log += c.toString();
  });
  child.stderr!.on("data", (c: Buffer) => {
    log += c.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await fetch(`${url}/v2/`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200 || status === 401) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`docker-registry did not start: ${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  // Pushes authenticate like docker does: answer the 401 challenge once, with Basic or a Bearer token.
  const tokens = new Map<string, string>();
  async function send(repository: string, input: string, init: RequestInit): Promise<Response> {
    const target = input.startsWith("http") ? input : `${url}${input}`;
    const withAuth = (): RequestInit => {
      const token = tokens.get(repository);
      return token ? { ...init, headers: { ...(init.headers as object), authorization: token } } : init;
    };
    let res = await fetch(target, withAuth());
    if (res.status === 401 && opts.auth) {
      await res.arrayBuffer();
      const { username, password } = opts.auth.credentials;
      const basic = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
      if (tokenService) {
        const tokenUrl = `${tokenService.url}?service=sandpit-test-registry&scope=repository:${repository}:pull,push`;
        const body = (await (await fetch(tokenUrl, { headers: { authorization: basic } })).json()) as { token: string };
        tokens.set(repository, `Bearer ${body.token}`);
      } else {
        tokens.set(repository, basic);
      }
      res = await fetch(target, withAuth());
    }
    return res;
  }

  return {
    host: `127.0.0.1:${port}`,
    url,
    allowedHosts: [`127.0.0.1:${port}`, ...(tokenService ? [tokenService.host] : [])],
    log: () => log,
    blobGets(repository, digest) {
      const pattern = new RegExp(
        `"GET /v2/${repository}/blobs/${digest ?? "sha256:[0-9a-f]{64}"} HTTP/1\\.1" 200`,
        "g",
      );
      return (log.match(pattern) ?? []).length;
    },
    async pushBlob(repository, data) {
      const digest = sha256(data);
      const start = await send(repository, `/v2/${repository}/blobs/uploads/`, { method: "POST" });
      if (start.status !== 202) throw new Error(`blob upload start: ${start.status} ${await start.text()}`);
      const location = new URL(start.headers.get("location")!, url);
      location.searchParams.set("digest", digest);
      const put = await send(repository, location.toString(), {
        method: "PUT",
        body: new Uint8Array(data),
        headers: { "content-type": "application/octet-stream" },
      });
      if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
      return { digest, size: data.length };
    },
    async pushManifest(repository, reference, manifest, mediaType) {
      const body = JSON.stringify(manifest);
      const res = await send(repository, `/v2/${repository}/manifests/${reference}`, {
        method: "PUT",
        body,
        headers: { "content-type": mediaType },
      });
      if (res.status !== 201) throw new Error(`manifest upload: ${res.status} ${await res.text()}`);
      return sha256(body);
    },
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      if (tokenService) await new Promise((r) => tokenService!.server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A directory tree under `workDir` for a layer: file contents (mode 0644, or [content, mode]; a name
 * ending in `/` is a directory), owned by root unless `owners` give a uid (used as gid too).
 */
export function layerTree(
  workDir: string,
  files: Record<string, string | [string, number]>,
  owners: Record<string, number> = {},
): string {
  const dir = mkdtempSync(path.join(workDir, "layer-"));
  chmodSync(dir, 0o755);
  for (const [file, spec] of Object.entries(files)) {
    const [content, mode] = typeof spec === "string" ? [spec, 0o644] : spec;
    const target = path.join(dir, file);
    mkdirSync(path.dirname(target), { recursive: true });
    if (file.endsWith("/")) mkdirSync(target, { recursive: true, mode: 0o755 });
    else writeFileSync(target, content, { mode });
  }
  for (const [file, uid] of Object.entries(owners)) chownSync(path.join(dir, file), uid, uid);
  return dir;
}

/**
 * A bottom layer without Docker: static busybox (/bin/sh and its other applets), an /etc/passwd with
 * root and `app` (uid 1000, home /home/app), and a few files under /data and /opt/dir.
 */
export function busyboxLayer(workDir: string): string {
  const dir = layerTree(
    workDir,
    {
      "etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
      "etc/group": "root:x:0:\napp:x:1000:\n",
      "data/keep.txt": "kept\n",
      "data/gone.txt": "deleted by the second layer\n",
      "opt/dir/a.txt": "hidden by the opaque directory\n",
      "home/app/": "",
      "root/": "",
    },
    { "home/app": 1000 },
  );
  mkdirSync(path.join(dir, "bin"));
  execFileSync("cp", ["/bin/busybox", path.join(dir, "bin/busybox")]);
  for (const applet of execFileSync("/bin/busybox", ["--list"]).toString().split("\n")) {
    if (applet && applet !== "busybox") symlinkSync("busybox", path.join(dir, "bin", applet));
  }
  return dir;
}

/** A layer: a directory as a tar (owners and modes as they are on disk), plain and gzipped. */
export function layerOf(dir: string): { tar: Buffer; gzip: Buffer; diffId: string } {
  const tar = execFileSync("tar", ["--numeric-owner", "--sort=name", "-C", dir, "-cf", "-", "."], {
    maxBuffer: 512 * 1024 * 1024,
  });
  return { tar, gzip: gzipSync(tar), diffId: sha256(tar) };
}

export interface ImageConfig {
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  Entrypoint?: string[];
  Cmd?: string[];
}

/**
 * Pushes an image of the given layer directories (base first) with a config, as a Docker schema 2
 * manifest (gzip layers) or an OCI manifest (`oci`: uncompressed layers); returns the manifest's digest.
 */
export async function pushImage(
  registry: TestRegistry,
  repository: string,
  tag: string,
  layerDirs: string[],
  config: ImageConfig,
  opts: { format?: "docker" | "oci"; architecture?: string } = {},
): Promise<{ digest: string; manifest: Record<string, unknown>; mediaType: string; layerDigests: string[] }> {
  const oci = opts.format === "oci";
  const layers = layerDirs.map(layerOf);
  const pushed = [];
  for (const layer of layers) pushed.push(await registry.pushBlob(repository, oci ? layer.tar : layer.gzip));
  const configJson = Buffer.from(
    JSON.stringify({
      architecture: opts.architecture ?? "amd64",
      os: "linux",
      config,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const configBlob = await registry.pushBlob(repository, configJson);
  const mediaType = oci ? MEDIA.ociManifest : MEDIA.dockerManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: oci ? MEDIA.ociConfig : MEDIA.dockerConfig, ...configBlob },
    layers: pushed.map((p) => ({ mediaType: oci ? MEDIA.ociLayer : MEDIA.dockerLayerGzip, ...p })),
  };
  const digest = await registry.pushManifest(repository, tag, manifest, mediaType);
  return { digest, manifest, mediaType, layerDigests: pushed.map((p) => p.digest) };
}
