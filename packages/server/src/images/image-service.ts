import { EventEmitter } from "node:events";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Image, ImagePullEvent, ImagePullProgress, ImageRef } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import { ApiError } from "../errors.js";
import { iso, now } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import type { ImageResolver } from "../services/sandbox-origin.js";
import type { ResolvedRootfs, RootfsConfig } from "../templates/template-service.js";
import {
  formatImageReference,
  type ImageReference,
  ImageReferenceError,
  parseImageReference,
} from "./image-reference.js";
import { fetchLayer } from "./layer-fetch.js";
import { type Descriptor, type RegistryClient, RegistryError, type RegistrySession } from "./registry-client.js";

/** An image as cached: its manifest's digest, its layers (base first) and how it starts. */
interface StoredImage {
  digest: string;
  reference: string;
  layers: { digest: string; size: number; empty: boolean }[];
  config: RootfsConfig;
  sizeBytes: number;
  pulledAt: number;
}

/** What an organisation has pulled, by canonical reference (shown by the images API). */
interface OrgImageRecord {
  uri: string;
  reference: string;
  digest: string | null;
  status: "pulling" | "ready" | "failed";
  error: string | null;
  pullCount: number;
  pulledAt: number | null;
}

/** The parts of an image config Sandpit reads. */
interface ImageConfigFile {
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
  } | null;
  rootfs?: { type?: string; diff_ids?: string[] };
}

const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
const PARALLEL_LAYERS = 3;

/** One pull of an image's layers, joined by every create that needs the same image meanwhile. */
export class ImagePull extends EventEmitter {
  progress: ImagePullProgress;
  readonly done: Promise<StoredImage>;

  constructor(layers: Descriptor[], run: (pull: ImagePull) => Promise<StoredImage>) {
    super();
    this.progress = {
      phase: "downloading",
      layersDone: 0,
      layersTotal: layers.length,
      bytesDone: 0,
      bytesTotal: layers.reduce((n, l) => n + l.size, 0),
    };
    this.done = run(this);
    this.done.catch(() => undefined);
  }

  update(patch: Partial<ImagePullProgress>) {
    this.progress = { ...this.progress, ...patch };
    this.emit("progress", this.progress);
  }
}

/** The image's config as Sandpit starts sandboxes: `USER uid:gid` keeps the user part. */
export function rootfsConfigOf(file: ImageConfigFile): RootfsConfig {
  const c = file.config ?? {};
  const env: Record<string, string> = {};
  for (const entry of c.Env ?? []) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  const user = (c.User ?? "").split(":")[0] ?? "";
  return {
    env,
    workingDir: c.WorkingDir ? c.WorkingDir : null,
    user: user ? user : null,
    entrypoint: c.Entrypoint?.length ? c.Entrypoint : null,
    cmd: c.Cmd?.length ? c.Cmd : null,
  };
}

/**
 * Pulls container images from registries into a cache under the data directory and resolves them to
 * read-only root filesystems: each layer is downloaded and unpacked once, by digest, into its own
 * directory that every sandbox of every image with that layer shares. A create with an image always
 * asks the registry for the manifest with the caller's credentials (so that a cached private image is
 * never handed to someone the registry would refuse); layers come from the cache. Concurrent pulls of
 * one image are one download. Credentials live only as long as the request that brought them.
 */
export class ImageService implements ImageResolver {
  private readonly pulls = new Map<string, ImagePull>();
  private readonly layerFetches = new Map<string, Promise<boolean>>();
  private readonly orgRecords = new Map<string, Map<string, OrgImageRecord>>();
  private orgWrites = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly registry: RegistryClient,
    private readonly log: FastifyBaseLogger,
  ) {}

  private layerDir(digest: string) {
    // Short names keep overlayfs' lowerdir option (one page) room for many layers; 96 bits are unique.
    return path.join(this.dir, "layers", digest.slice("sha256:".length, "sha256:".length + 24));
  }

  private imageFile(digest: string) {
    return path.join(this.dir, "manifests", `${digest.slice("sha256:".length)}.json`);
  }

  /** Creates the cache directories (private to root: layers hold set-id files) and drops partial layers. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const sub of ["layers", "manifests", "orgs"]) await mkdir(path.join(this.dir, sub), { recursive: true });
    for (const name of await readdir(path.join(this.dir, "layers"))) {
      if (name.startsWith(".")) await rm(path.join(this.dir, "layers", name), { recursive: true, force: true });
    }
  }

  async resolve(orgId: string, ref: ImageRef): Promise<ResolvedRootfs & { uri: string }> {
    const { pull, stored } = await this.pull(orgId, ref);
    const image = stored ?? (await pull!.done);
    return { uri: ref.uri, ...this.rootfsOf(image) };
  }

  /**
   * Layer directories top first, without empty layers and without repeats: a layer that occurs twice
   * takes effect at its topmost place, and overlayfs refuses a directory listed twice.
   */
  private rootfsOf(image: StoredImage): ResolvedRootfs {
    const seen = new Set<string>();
    const layers: string[] = [];
    for (const layer of [...image.layers].reverse()) {
      if (layer.empty || seen.has(layer.digest)) continue;
      seen.add(layer.digest);
      layers.push(this.layerDir(layer.digest));
    }
    return { layers, config: image.config };
  }

  /**
   * Checks the reference with the registry (with the caller's credentials) and returns the cached image,
   * or the pull that fetches it (started now or joined).
   */
  async pull(orgId: string, ref: ImageRef): Promise<{ pull?: ImagePull; stored?: StoredImage; reference: string }> {
    const parsed = this.parse(ref.uri);
    const reference = formatImageReference(parsed);
    const session = this.registry.session(parsed, ref.auth);
    const resolved = await session.resolveManifest().catch((e: unknown) => {
      throw this.apiErrorOf(e, ref.uri);
    });
    const stored = await this.stored(resolved.digest);
    if (stored) {
      await this.recordOrg(
        orgId,
        { uri: ref.uri, reference, digest: resolved.digest, status: "ready", error: null },
        0,
        stored.pulledAt,
      );
      return { stored, reference };
    }
    let pull = this.pulls.get(resolved.digest);
    const started = !pull;
    if (!pull) {
      pull = this.startPull(resolved.digest, reference, session, resolved.manifest.config, resolved.manifest.layers);
    }
    const record = { uri: ref.uri, reference, digest: resolved.digest };
    await this.recordOrg(orgId, { ...record, status: "pulling", error: null }, started ? 1 : 0, null);
    pull.done.then(
      (image) => this.recordOrg(orgId, { ...record, status: "ready", error: null }, 0, image.pulledAt),
      (e: unknown) =>
        this.recordOrg(
          orgId,
          { ...record, status: "failed", error: e instanceof Error ? e.message : String(e) },
          0,
          null,
        ),
    );
    return { pull, reference };
  }

  private parse(uri: string): ImageReference {
    try {
      return parseImageReference(uri);
    } catch (e) {
      if (!(e instanceof ImageReferenceError)) throw e;
      throw new ApiError("validation_failed", `Invalid request: image.uri: ${e.message}`, {
        fields: [{ field: "image.uri", rule: "image_reference", message: e.message }],
      });
    }
  }

  /** Registry failures as API errors that name the request field to fix. */
  private apiErrorOf(e: unknown, uri: string): Error {
    if ((e as NodeJS.ErrnoException).code === "ENOSPC") {
      return new ApiError("insufficient_storage", `image ${uri}: the server's disk is full`);
    }
    if (!(e instanceof RegistryError)) return e instanceof Error ? e : new Error(String(e));
    switch (e.kind) {
      case "auth":
        return new ApiError("image_auth_failed", `image ${uri}: ${e.message}`, {
          fields: [{ field: "image.auth", rule: "registry_auth", message: e.message }],
        });
      case "not_found":
        return new ApiError("image_not_found", `image ${uri}: ${e.message}`, {
          fields: [{ field: "image.uri", rule: "not_found", message: e.message }],
        });
      case "invalid":
        return new ApiError("image_invalid", `image ${uri}: ${e.message}`, {
          fields: [{ field: "image.uri", rule: "unsupported_image", message: e.message }],
        });
      case "refused":
        return new ApiError("validation_failed", `image ${uri}: ${e.message}`, {
          fields: [{ field: "image.uri", rule: "reachable_public_host", message: e.message }],
        });
      case "unavailable":
        return new ApiError("upstream_unavailable", `image ${uri}: ${e.message}`, { field: "image.uri" });
    }
  }

  private async stored(digest: string): Promise<StoredImage | undefined> {
    try {
      return JSON.parse(await readFile(this.imageFile(digest), "utf8")) as StoredImage;
    } catch {
      return undefined;
    }
  }

  private startPull(
    digest: string,
    reference: string,
    session: RegistrySession,
    configDescriptor: Descriptor,
    layers: Descriptor[],
  ): ImagePull {
    const log = this.log.child({ image: reference, digest });
    const pull = new ImagePull(layers, async (p) => {
      const started = now();
      try {
        const configFile = await this.readConfig(session, configDescriptor);
        const diffIds = configFile.rootfs?.diff_ids ?? [];
        if (diffIds.length !== layers.length) {
          throw new RegistryError(
            "invalid",
            `the config lists ${diffIds.length} layers, the manifest ${layers.length}`,
          );
        }
        const empties = new Array<boolean>(layers.length).fill(false);
        let next = 0;
        const worker = async () => {
          while (next < layers.length) {
            const i = next++;
            empties[i] = await this.ensureLayer(session, layers[i]!, diffIds[i], p);
            p.update({ layersDone: p.progress.layersDone + 1 });
          }
        };
        await Promise.all(Array.from({ length: Math.min(PARALLEL_LAYERS, layers.length) }, worker));
        const image: StoredImage = {
          digest,
          reference,
          layers: layers.map((l, i) => ({ digest: l.digest, size: l.size, empty: empties[i]! })),
          config: rootfsConfigOf(configFile),
          sizeBytes: p.progress.bytesTotal,
          pulledAt: now(),
        };
        const file = this.imageFile(digest);
        await writeFile(`${file}.tmp`, JSON.stringify(image));
        await rename(`${file}.tmp`, file);
        p.update({ phase: "done", bytesDone: p.progress.bytesTotal });
        log.info({ layers: layers.length, bytes: image.sizeBytes, ms: now() - started }, "image pulled");
        return image;
      } catch (e) {
        log.warn({ err: e instanceof Error ? e.message : String(e) }, "image pull failed");
        throw this.apiErrorOf(e, reference);
      } finally {
        this.pulls.delete(digest);
      }
    });
    this.pulls.set(digest, pull);
    return pull;
  }

  private async readConfig(session: RegistrySession, descriptor: Descriptor): Promise<ImageConfigFile> {
    const body = await session.smallBlob(descriptor, MAX_CONFIG_BYTES);
    let file: ImageConfigFile;
    try {
      file = JSON.parse(body.toString("utf8")) as ImageConfigFile;
    } catch {
      throw new RegistryError("invalid", "the image config is not JSON");
    }
    if ((file.os && file.os !== "linux") || (file.architecture && file.architecture !== "amd64")) {
      throw new RegistryError("invalid", `the image is for ${file.os}/${file.architecture}; Sandpit runs linux/amd64`);
    }
    return file;
  }

  /**
   * Makes sure a layer is unpacked in the cache (downloading it once, also when several pulls need it
   * at the same time); returns whether it is empty.
   */
  private async ensureLayer(
    session: RegistrySession,
    descriptor: Descriptor,
    diffId: string | undefined,
    pull: ImagePull,
  ): Promise<boolean> {
    const dir = this.layerDir(descriptor.digest);
    const isEmpty = async () => (await readdir(dir)).length === 0;
    let fetching = this.layerFetches.get(descriptor.digest);
    const mine = !fetching;
    if (!fetching) {
      // Registered before anything is awaited, so that a second pull of the layer joins this one.
      fetching = (async () => {
        if ((await isEmpty().catch(() => undefined)) !== undefined) return false;
        const partial = path.join(this.dir, "layers", `.partial-${randomBase32(10)}`);
        await mkdir(partial, { mode: 0o755 });
        try {
          await fetchLayer(session, descriptor, diffId, partial, (n) =>
            pull.update({ bytesDone: pull.progress.bytesDone + n }),
          );
          await rename(partial, dir);
          return true;
        } catch (e) {
          await rm(partial, { recursive: true, force: true });
          throw e;
        }
      })().finally(() => this.layerFetches.delete(descriptor.digest));
      this.layerFetches.set(descriptor.digest, fetching);
    }
    const downloadedHere = (await fetching) && mine;
    // Bytes of a cached layer, or of one another pull fetched, count as done at once.
    if (!downloadedHere) pull.update({ bytesDone: pull.progress.bytesDone + descriptor.size });
    return isEmpty();
  }

  private async orgImages(orgId: string): Promise<Map<string, OrgImageRecord>> {
    let records = this.orgRecords.get(orgId);
    if (!records) {
      const file = path.join(this.dir, "orgs", `${orgId}.json`);
      const list = await readFile(file, "utf8")
        .then((t) => JSON.parse(t) as OrgImageRecord[])
        .catch(() => [] as OrgImageRecord[]);
      records = this.orgRecords.get(orgId) ?? new Map(list.map((r) => [r.reference, r]));
      this.orgRecords.set(orgId, records);
    }
    return records;
  }

  /** Updates an organisation's record of an image (and persists the organisation's list). */
  private async recordOrg(
    orgId: string,
    patch: Pick<OrgImageRecord, "uri" | "reference" | "digest" | "status" | "error">,
    pullsStarted: number,
    pulledAt: number | null,
  ): Promise<void> {
    const records = await this.orgImages(orgId);
    const before = records.get(patch.reference);
    records.set(patch.reference, {
      ...patch,
      pullCount: (before?.pullCount ?? 0) + pullsStarted,
      pulledAt: pulledAt ?? before?.pulledAt ?? null,
    });
    const file = path.join(this.dir, "orgs", `${orgId}.json`);
    const write = async () => {
      await writeFile(`${file}.tmp`, JSON.stringify([...records.values()]));
      await rename(`${file}.tmp`, file);
    };
    this.orgWrites = this.orgWrites.then(write, write);
    await this.orgWrites.catch((e) => this.log.error({ err: e }, "image list could not be saved"));
  }

  private async toImage(saved: OrgImageRecord): Promise<Image> {
    const pull = saved.digest && saved.status === "pulling" ? this.pulls.get(saved.digest) : undefined;
    // A pull the server was running when it stopped is not running any more.
    const record: OrgImageRecord =
      saved.status === "pulling" && !pull
        ? { ...saved, status: "failed", error: "the pull was interrupted (the server restarted); pull again" }
        : saved;
    const stored = record.digest ? await this.stored(record.digest) : undefined;
    return {
      uri: record.uri,
      reference: record.reference,
      digest: record.digest,
      status: record.status,
      progress: pull ? pull.progress : null,
      error: record.error,
      layers: stored ? stored.layers.length : pull ? pull.progress.layersTotal : null,
      sizeBytes: stored ? stored.sizeBytes : pull ? pull.progress.bytesTotal : null,
      pullCount: record.pullCount,
      pulledAt: iso(record.pulledAt),
    };
  }

  /** The images the organisation has pulled, newest first. */
  async list(orgId: string): Promise<Image[]> {
    const records = [...(await this.orgImages(orgId)).values()];
    const images = await Promise.all(records.map((r) => this.toImage(r)));
    return images.sort((a, b) => (b.pulledAt ?? "9").localeCompare(a.pulledAt ?? "9"));
  }

  /** One of the organisation's images by the reference it was pulled with (or its canonical form). */
  async get(orgId: string, uri: string): Promise<Image> {
    const records = await this.orgImages(orgId);
    let reference: string;
    try {
      reference = formatImageReference(parseImageReference(uri));
    } catch {
      reference = uri;
    }
    const record = records.get(reference) ?? [...records.values()].find((r) => r.uri === uri);
    if (!record) throw new ApiError("image_not_found", `image ${uri} has not been pulled by this organisation`);
    return this.toImage(record);
  }

  /**
   * Pulls an image and yields its progress, then `done` with the image; registry errors that happen
   * before the download starts are thrown (the route answers them as plain errors).
   */
  async *pullEvents(orgId: string, ref: ImageRef): AsyncGenerator<ImagePullEvent> {
    const { pull, reference } = await this.pull(orgId, ref);
    if (pull) {
      const queue: ImagePullProgress[] = [pull.progress];
      let wake: (() => void) | undefined;
      const onProgress = (p: ImagePullProgress) => {
        queue.push(p);
        wake?.();
      };
      pull.on("progress", onProgress);
      let finished = false;
      pull.done.then(
        () => {
          finished = true;
          wake?.();
        },
        () => {
          finished = true;
          wake?.();
        },
      );
      let lastSent = 0;
      let lastKey = "";
      try {
        for (;;) {
          // Every new phase or finished layer is sent, even when several came at once; byte updates come
          // per chunk, so a few of those a second are enough.
          for (const p of queue.splice(0)) {
            const key = `${p.phase}/${p.layersDone}`;
            if (key === lastKey && Date.now() - lastSent <= 200) continue;
            lastSent = Date.now();
            lastKey = key;
            yield { type: "progress", ...p };
          }
          if (finished && queue.length === 0) break;
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, 250);
          });
        }
      } finally {
        pull.off("progress", onProgress);
      }
      try {
        await pull.done;
      } catch (e) {
        const error = e instanceof ApiError ? e : new ApiError("internal", String(e));
        yield { type: "error", code: error.code, message: error.message };
        return;
      }
    }
    yield { type: "done", image: await this.get(orgId, reference) };
  }
}
