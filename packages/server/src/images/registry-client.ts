import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { OutboundBlockedError, type OutboundGuard } from "../outbound/outbound-guard.js";
import {
  DOCKER_HUB,
  DOCKER_HUB_API,
  type ImageReference,
  isInsecureRegistry,
  manifestReferenceOf,
} from "./image-reference.js";

export interface RegistryCredentials {
  username: string;
  password: string;
}

/**
 * Why a registry request failed: `auth` (credentials missing, wrong or not allowed), `not_found`
 * (no such repository, tag or digest), `invalid` (content Sandpit cannot use or that fails its digest),
 * `refused` (a destination the outbound guard does not let the server reach), `unavailable` (unreachable
 * or a server error).
 */
export class RegistryError extends Error {
  constructor(
    readonly kind: "auth" | "not_found" | "invalid" | "refused" | "unavailable",
    message: string,
  ) {
    super(message);
  }
}

/** A content descriptor of a manifest: what to fetch, how large it is and its digest. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  urls?: string[];
}

/** A single-platform image manifest (Docker schema 2 or OCI). */
export interface ImageManifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(", ");
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;
/** A connection that sends nothing for this long is given up. */
const IDLE_TIMEOUT_MS = 60_000;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export interface RegistryClientOptions {
  guard: OutboundGuard;
  /** Registries (host or host:port) reached over plain HTTP besides loopback ones. */
  insecureRegistries: string[];
  /** Mirror base URLs per registry (`docker.io` → [`http://127.0.0.1:5000`]), tried before the registry. */
  mirrors: Record<string, string[]>;
  /** The platform to choose from an index. */
  platform?: { os: string; architecture: string };
}

export function sha256Digest(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** `Bearer realm="…",service="…"` → scheme and parameters. */
export function parseChallenge(header: string | undefined): { scheme: string; params: Record<string, string> } | null {
  if (!header) return null;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return null;
  const params: Record<string, string> = {};
  for (const p of match[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

async function readBody(res: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new RegistryError("invalid", `a registry response is larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The registry's error text (`{errors:[{code,message}]}`), for messages. */
async function registryErrorText(res: IncomingMessage): Promise<string> {
  const body = await readBody(res, 64 * 1024).catch(() => Buffer.alloc(0));
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) return `${first.code ?? ""}${first.message ? `: ${first.message}` : ""}`;
  } catch {
    // not JSON
  }
  return body.toString("utf8").slice(0, 200).trim();
}

/**
 * A client of the Docker Registry HTTP API v2 (the OCI distribution API). Every connection goes
 * through the outbound guard, pinned to the address it checked; redirects are checked again.
 */
export class RegistryClient {
  constructor(private readonly opts: RegistryClientOptions) {}

  /** A session for one repository with one set of credentials (tokens live as long as it does). */
  session(ref: ImageReference, credentials?: RegistryCredentials): RegistrySession {
    const origin = isInsecureRegistry(ref.registry, this.opts.insecureRegistries)
      ? `http://${ref.registry}`
      : `https://${ref.registry === DOCKER_HUB ? DOCKER_HUB_API : ref.registry}`;
    const endpoints = [...(this.opts.mirrors[ref.registry] ?? []), origin];
    return new RegistrySession(this, ref, endpoints, credentials, this.opts.platform ?? defaultPlatform);
  }

  /** One HTTP request through the guard, following redirects (credentials only to the same origin). */
  async request(url: URL, headers: Record<string, string>, method: "GET" | "HEAD" = "GET"): Promise<IncomingMessage> {
    try {
      const { response } = await this.opts.guard.request(url, {
        method,
        headers,
        idleTimeoutMs: IDLE_TIMEOUT_MS,
        maxRedirects: MAX_REDIRECTS,
      });
      return response;
    } catch (e) {
      if (e instanceof OutboundBlockedError) throw new RegistryError("refused", e.message);
      throw new RegistryError("unavailable", `${url.host}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

const defaultPlatform = { os: "linux", architecture: "amd64" };

/** The image's manifest for the chosen platform, its digest and where it was found. */
export interface ResolvedManifest {
  digest: string;
  manifest: ImageManifest;
  /** The base URL that answered (a mirror or the registry). */
  endpoint: string;
}

export class RegistrySession {
  private authorization: string | undefined;
  private endpoint: string | undefined;

  constructor(
    private readonly client: RegistryClient,
    readonly ref: ImageReference,
    private readonly endpoints: string[],
    private readonly credentials: RegistryCredentials | undefined,
    private readonly platform: { os: string; architecture: string },
  ) {}

  private describe(): string {
    return `${this.ref.registry}/${this.ref.repository}`;
  }

  /**
   * Resolves the tag or digest to the manifest of the platform's image (choosing from an index),
   * verifying digests. Mirrors are tried first; one that fails for any reason but credentials is
   * skipped for the next.
   */
  async resolveManifest(): Promise<ResolvedManifest> {
    const failures: RegistryError[] = [];
    for (const endpoint of this.endpoints) {
      this.endpoint = endpoint;
      this.authorization = undefined;
      try {
        return { ...(await this.resolveAt()), endpoint };
      } catch (e) {
        if (!(e instanceof RegistryError)) throw e;
        failures.push(e);
        if (e.kind === "auth" || e.kind === "invalid") break;
      }
    }
    // The most telling failure: credentials or content, then a refused destination, absence, unreachability.
    const rank = { auth: 0, invalid: 1, refused: 2, not_found: 3, unavailable: 4 } as const;
    throw failures.sort((a, b) => rank[a.kind] - rank[b.kind])[0]!;
  }

  private async resolveAt(): Promise<Omit<ResolvedManifest, "endpoint">> {
    const first = await this.fetchManifest(manifestReferenceOf(this.ref), this.ref.digest);
    if (first.mediaType === MEDIA.ociIndex || first.mediaType === MEDIA.dockerList) {
      const index = first.json as { manifests?: Descriptor[] };
      const candidates = (index.manifests ?? []).filter(
        (m) => m.platform?.os === this.platform.os && m.platform?.architecture === this.platform.architecture,
      );
      const chosen = candidates.find((m) => !m.platform?.variant) ?? candidates[0];
      if (!chosen) {
        const offered = (index.manifests ?? [])
          .map((m) => `${m.platform?.os ?? "?"}/${m.platform?.architecture ?? "?"}`)
          .join(", ");
        throw new RegistryError(
          "invalid",
          `${this.describe()} has no ${this.platform.os}/${this.platform.architecture} image (it has ${offered || "none"})`,
        );
      }
      if (!DIGEST.test(chosen.digest)) throw new RegistryError("invalid", `unsupported digest ${chosen.digest}`);
      const inner = await this.fetchManifest(chosen.digest, chosen.digest);
      return { digest: chosen.digest, manifest: this.imageManifest(inner.mediaType, inner.json) };
    }
    return { digest: first.digest, manifest: this.imageManifest(first.mediaType, first.json) };
  }

  private imageManifest(mediaType: string, json: unknown): ImageManifest {
    if (mediaType !== MEDIA.ociManifest && mediaType !== MEDIA.dockerManifest) {
      const why =
        mediaType === MEDIA.dockerSchema1 || mediaType === MEDIA.dockerSchema1Signed
          ? "Docker schema 1 manifests are not supported; push the image again with a current client"
          : `unsupported manifest type ${mediaType || "(none)"}`;
      throw new RegistryError("invalid", `${this.describe()}: ${why}`);
    }
    const m = json as Partial<ImageManifest>;
    const valid = (d: Descriptor | undefined) =>
      d !== undefined && typeof d.digest === "string" && DIGEST.test(d.digest) && Number.isSafeInteger(d.size);
    if (!valid(m.config) || !Array.isArray(m.layers) || !m.layers.every(valid)) {
      throw new RegistryError("invalid", `${this.describe()}: the manifest has no valid config or layer list`);
    }
    return { mediaType, config: m.config!, layers: m.layers };
  }

  private async fetchManifest(
    reference: string,
    expectedDigest: string | null,
  ): Promise<{ mediaType: string; digest: string; json: unknown }> {
    const res = await this.send(`manifests/${reference}`, { accept: MANIFEST_ACCEPT }, "manifest");
    const body = await readBody(res, MAX_MANIFEST_BYTES);
    const digest = sha256Digest(body);
    if (expectedDigest && digest !== expectedDigest) {
      throw new RegistryError(
        "invalid",
        `${this.describe()}: manifest ${expectedDigest} arrived with digest ${digest}`,
      );
    }
    let json: { mediaType?: string; schemaVersion?: number };
    try {
      json = JSON.parse(body.toString("utf8")) as typeof json;
    } catch {
      throw new RegistryError("invalid", `${this.describe()}: the manifest is not JSON`);
    }
    const headerType = (res.headers["content-type"] ?? "").split(";")[0]!.trim();
    // The body's own mediaType wins; registries answer generic types for some uploads.
    let mediaType = json.mediaType ?? headerType;
    if (!json.mediaType && json.schemaVersion === 1) mediaType = MEDIA.dockerSchema1;
    if (!json.mediaType && "manifests" in json) mediaType = MEDIA.ociIndex;
    if (!json.mediaType && "config" in json && headerType !== MEDIA.dockerManifest) mediaType = MEDIA.ociManifest;
    return { mediaType, digest, json };
  }

  /**
   * A blob's content as a stream; the caller verifies its digest while reading. `onResponse` gets the
   * response so that the caller can abort it.
   */
  async blob(descriptor: Descriptor): Promise<IncomingMessage> {
    if (descriptor.urls?.length) {
      throw new RegistryError(
        "invalid",
        `${this.describe()}: foreign layers (${descriptor.mediaType}) are not supported`,
      );
    }
    return this.send(`blobs/${descriptor.digest}`, {}, `blob ${descriptor.digest}`);
  }

  /** A small blob (the image config) read whole and verified. */
  async smallBlob(descriptor: Descriptor, limit: number): Promise<Buffer> {
    if (descriptor.size > limit)
      throw new RegistryError("invalid", `${descriptor.digest} is larger than ${limit} bytes`);
    const body = await readBody(await this.blob(descriptor), limit);
    if (sha256Digest(body) !== descriptor.digest) {
      throw new RegistryError("invalid", `${this.describe()}: blob ${descriptor.digest} does not match its digest`);
    }
    return body;
  }

  /** GET `/v2/<repository>/<path>`, answering an auth challenge once (Basic or Bearer token). */
  private async send(pathname: string, headers: Record<string, string>, what: string): Promise<IncomingMessage> {
    const url = new URL(`${this.endpoint}/v2/${this.ref.repository}/${pathname}`);
    const withAuth = () => ({ ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) });
    let res = await this.client.request(url, withAuth());
    if (res.statusCode === 401 && this.authorization === undefined) {
      const challenge = parseChallenge(res.headers["www-authenticate"] as string | undefined);
      res.resume();
      this.authorization = await this.authorize(challenge);
      res = await this.client.request(url, withAuth());
    }
    const status = res.statusCode ?? 0;
    if (status === 200) return res;
    const text = await registryErrorText(res);
    const where = `${this.describe()} (${what} at ${url.host})`;
    if (status === 401 || status === 403) {
      throw new RegistryError(
        "auth",
        this.credentials
          ? `the registry refused the credentials for ${where}${text ? `: ${text}` : ""}`
          : `${where} needs credentials${text ? `: ${text}` : ""}`,
      );
    }
    if (status === 404) throw new RegistryError("not_found", `${where} does not exist${text ? `: ${text}` : ""}`);
    throw new RegistryError("unavailable", `${where}: the registry answered HTTP ${status}${text ? `: ${text}` : ""}`);
  }

  /** The Authorization header that answers a challenge: Basic with the credentials, or a Bearer token. */
  private async authorize(challenge: ReturnType<typeof parseChallenge>): Promise<string> {
    const basic = this.credentials
      ? `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString("base64")}`
      : undefined;
    if (challenge?.scheme === "bearer" && challenge.params.realm) {
      return `Bearer ${await this.token(challenge.params, basic)}`;
    }
    if (challenge?.scheme === "basic" && basic) return basic;
    throw new RegistryError("auth", `${this.describe()} needs credentials`);
  }

  /** A token from the registry's token service, asked with the credentials when there are some. */
  private async token(params: Record<string, string>, basic: string | undefined): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(params.realm!);
    } catch {
      throw new RegistryError("invalid", `${this.describe()}: the token realm ${params.realm} is not a URL`);
    }
    if (params.service) realm.searchParams.set("service", params.service);
    realm.searchParams.set("scope", params.scope ?? `repository:${this.ref.repository}:pull`);
    const res = await this.client.request(realm, basic ? { authorization: basic } : {});
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      res.resume();
      throw new RegistryError(
        "auth",
        basic
          ? `the registry's token service refused the credentials for ${this.describe()}`
          : `${this.describe()} needs credentials`,
      );
    }
    if (status !== 200) {
      throw new RegistryError(
        "unavailable",
        `the token service of ${this.describe()} answered HTTP ${status}: ${await registryErrorText(res)}`,
      );
    }
    const body = await readBody(res, 1024 * 1024);
    try {
      const parsed = JSON.parse(body.toString("utf8")) as { token?: string; access_token?: string };
      const token = parsed.token ?? parsed.access_token;
      if (token) return token;
    } catch {
      // reported below
    }
    throw new RegistryError("unavailable", `the token service of ${this.describe()} answered without a token`);
  }
}
