import { lstat, readFile } from "node:fs/promises";
import path from "node:path";
import {
  type CreateSandboxParams,
  DESKTOP_DISPLAY,
  type DesktopSettings,
  desktopSettingsSchema,
  type ImageRef,
} from "@sandpit/contract";
import type { OrgRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import type { EgressCa } from "../network/egress-ca.js";
import type { RootfsSeed } from "../runtime/runtime.js";
import { SourceFetchError, type SourceFetcher } from "../sources/source-fetcher.js";
import type { ResolvedRootfs, TemplateService } from "../templates/template-service.js";
import { findAccount } from "./sandbox-accounts.js";

/** Pulls (or finds cached) container images; implemented by the image service. */
export interface ImageResolver {
  resolve(orgId: string, ref: ImageRef): Promise<ResolvedRootfs & { uri: string }>;
}

/** Where a new sandbox's filesystem and main process come from, resolved before it starts. */
export interface SandboxOrigin {
  /** What the sandbox record shows as its template: the template's name or `image:<uri>`. */
  template: string;
  rootfs: ResolvedRootfs;
  cwd: string;
  env: Record<string, string>;
  user: string | null;
  /** Files written into the sandbox before it starts (the egress CA in its trust stores). */
  files: Record<string, string>;
  /** The main process to start after create; empty for none. */
  entrypoint: string[];
  seeds: RootfsSeed[];
  /** Its desktop: asked for, or the desktop template's default; null for none. */
  desktop: DesktopSettings | null;
  /** Removes host-side temporary content (a fetched source) once the sandbox has its copy. */
  release: () => Promise<void>;
}

const DEFAULT_CWD = "/workspace";
const CA_FILE = "/usr/local/share/ca-certificates/sandpit-egress.crt";
const SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * Where `file` is in one layer: its host path when it is a regular file reached without any symlink on
 * the way (a layer's `etc -> /etc` must not lead to the host's files), `"absent"` when the layer does not
 * have it, `"unusable"` when it has something else there.
 */
async function fileInLayer(layer: string, file: string): Promise<string | "absent" | "unusable"> {
  const parts = file.split("/").filter(Boolean);
  let current = layer;
  for (const [i, part] of parts.entries()) {
    current = path.join(current, part);
    const info = await lstat(current).catch(() => undefined);
    if (!info) return "absent";
    const last = i === parts.length - 1;
    if (info.isSymbolicLink()) return "unusable";
    if (last ? !info.isFile() : !info.isDirectory()) return "unusable";
  }
  return current;
}

/** A file from the topmost layer that has it, read only when it is a regular file reached without symlinks. */
export async function readLayerFile(layers: string[], file: string): Promise<string | undefined> {
  for (const layer of layers) {
    const found = await fileInLayer(layer, file);
    if (found === "absent") continue;
    return found === "unusable" ? undefined : readFile(found, "utf8");
  }
  return undefined;
}

function conflict(field: string, message: string): ApiError {
  return new ApiError("validation_failed", `Invalid request: ${field}: ${message}`, {
    fields: [{ field, rule: "conflict", message }],
  });
}

/**
 * Resolves a create request's template, runtime preset or image, and fetches its source — everything
 * that decides what the sandbox's filesystem holds and how it starts.
 */
export class SandboxOrigins {
  constructor(
    private readonly templates: TemplateService,
    private readonly sources: SourceFetcher,
    private readonly images: ImageResolver,
    /** The egress broker's CA, installed into every sandbox so that brokered HTTPS verifies. */
    private readonly egressCa: EgressCa,
  ) {}

  /**
   * The organisation's egress CA in the system bundle and beside it, as the sandbox's files, and the
   * variables that point common HTTP clients at them. The layers' bundle is read once per create.
   */
  private async trust(
    orgId: string,
    layers: string[],
  ): Promise<{ files: Record<string, string>; env: Record<string, string> }> {
    const ca = await this.egressCa.certificatePem(orgId);
    const bundle = await readLayerFile(layers, SYSTEM_BUNDLE);
    if (bundle === undefined) return { files: { [CA_FILE.slice(1)]: ca }, env: { NODE_EXTRA_CA_CERTS: CA_FILE } };
    return {
      files: { [CA_FILE.slice(1)]: ca, [SYSTEM_BUNDLE.slice(1)]: `${bundle.trimEnd()}\n${ca}` },
      env: {
        NODE_EXTRA_CA_CERTS: CA_FILE,
        SSL_CERT_FILE: SYSTEM_BUNDLE,
        REQUESTS_CA_BUNDLE: SYSTEM_BUNDLE,
        CURL_CA_BUNDLE: SYSTEM_BUNDLE,
      },
    };
  }

  /** The snapshot a create starts from (`snapshotId` or a snapshot source), after checking for conflicts. */
  snapshotIdOf(params: CreateSandboxParams): string | undefined {
    const fromSource = params.source?.type === "snapshot" ? params.source.snapshotId : undefined;
    if (fromSource && params.snapshotId && fromSource !== params.snapshotId) {
      throw conflict("source.snapshotId", "differs from snapshotId");
    }
    const snapshotId = params.snapshotId ?? fromSource;
    if (snapshotId) {
      if (params.image) throw conflict("image", "a sandbox from a snapshot has the snapshot's filesystem");
      if (params.runtime) throw conflict("runtime", "a sandbox from a snapshot has the snapshot's filesystem");
      if (params.entrypoint) throw conflict("entrypoint", "a sandbox from a snapshot continues its processes");
    }
    return snapshotId;
  }

  async resolve(org: OrgRecord, params: CreateSandboxParams, diskMb: number): Promise<SandboxOrigin> {
    if (params.runtime && params.template !== "base" && params.template !== params.runtime) {
      throw conflict("runtime", `names template ${params.runtime}, but template is ${params.template}`);
    }
    if (params.image && (params.runtime || params.template !== "base")) {
      throw conflict("image", "give either an image or a template/runtime");
    }
    const { template, rootfs } = await this.rootfsFor(org, params);
    const cwd = params.cwd ?? rootfs.config.workingDir ?? DEFAULT_CWD;
    const user = params.user ?? rootfs.config.user ?? null;
    const entrypoint = params.entrypoint ?? [...(rootfs.config.entrypoint ?? []), ...(rootfs.config.cmd ?? [])];
    const trust = await this.trust(org.id, rootfs.layers);
    const desktop = this.desktopFor(template, params.desktop);
    const origin: SandboxOrigin = {
      template,
      rootfs,
      cwd,
      // The desktop's display is every command's, the way a desktop session's terminal has it.
      env: { ...(desktop ? { DISPLAY: DESKTOP_DISPLAY } : {}), ...rootfs.config.env, ...trust.env, ...params.env },
      files: trust.files,
      user,
      entrypoint,
      seeds: [],
      desktop,
      release: async () => undefined,
    };
    if (params.source && params.source.type !== "snapshot") {
      const owner = user === null ? { uid: 0, gid: 0 } : await this.hostAccount(rootfs.layers, user);
      try {
        const fetched = await this.sources.fetch(params.source, diskMb * 1024 * 1024);
        origin.seeds = [{ from: fetched.dir, to: cwd, ...owner }];
        origin.release = fetched.remove;
      } catch (e) {
        if (e instanceof SourceFetchError) {
          throw new ApiError("source_failed", e.message, { field: "source", type: params.source.type });
        }
        throw e;
      }
    }
    return origin;
  }

  /** The desktop a sandbox of this template gets: the one asked for, or the desktop template's default. */
  private desktopFor(template: string, asked: DesktopSettings | undefined): DesktopSettings | null {
    const support = this.templates.desktopSupport(template);
    if (asked && support === "none") {
      throw new ApiError(
        "validation_failed",
        `Invalid request: desktop: template ${template} has no display server (use the desktop template)`,
        { fields: [{ field: "desktop", rule: "template_without_desktop", message: `${template} has no X` }] },
      );
    }
    return asked ?? (support === "default" ? desktopSettingsSchema.parse({}) : null);
  }

  /** The layers and config of the request's image or template (runtime preset included). */
  async rootfsFor(
    org: OrgRecord,
    params: Pick<CreateSandboxParams, "image" | "template" | "runtime">,
  ): Promise<{ template: string; rootfs: ResolvedRootfs }> {
    if (params.image) {
      const image = await this.images.resolve(org.id, params.image);
      return { template: `image:${image.uri}`, rootfs: image };
    }
    const template = params.runtime ?? params.template;
    return { template, rootfs: await this.templates.resolve(org.id, template) };
  }

  /** A user's uid and gid from the topmost layer's /etc/passwd (content is copied before the sandbox runs). */
  private async hostAccount(layers: string[], user: string): Promise<{ uid: number; gid: number }> {
    const passwd = await readLayerFile(layers, "etc/passwd");
    const account = passwd === undefined ? undefined : findAccount(passwd, user);
    if (account) return { uid: account.uid, gid: account.gid };
    const numeric = findAccount("", user);
    if (numeric) return numeric;
    throw new ApiError("validation_failed", `Invalid request: user: ${user} is not a user of this template or image`, {
      fields: [{ field: "user", rule: "unknown_user", message: `${user} is not in /etc/passwd` }],
    });
  }
}
