import { readFile } from "node:fs/promises";
import path from "node:path";
import type { CreateSandboxParams, ImageRef } from "@sandpit/contract";
import { ApiError } from "../errors.js";
import type { RootfsSeed } from "../runtime/runtime.js";
import { SourceFetchError, type SourceFetcher } from "../sources/source-fetcher.js";
import type { OrgRecord } from "../store/store.js";
import type { ResolvedRootfs, TemplateService } from "../templates/template-service.js";
import { findAccount } from "./exec-service.js";

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
  /** The main process to start after create; empty for none. */
  entrypoint: string[];
  seeds: RootfsSeed[];
  /** Removes host-side temporary content (a fetched source) once the sandbox has its copy. */
  release: () => Promise<void>;
}

const DEFAULT_CWD = "/workspace";

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
  private images: ImageResolver | undefined;

  constructor(
    private readonly templates: TemplateService,
    private readonly sources: SourceFetcher,
  ) {}

  setImageResolver(images: ImageResolver) {
    this.images = images;
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
    const origin: SandboxOrigin = {
      template,
      rootfs,
      cwd,
      env: { ...rootfs.config.env, ...params.env },
      user,
      entrypoint,
      seeds: [],
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

  /** The layers and config of the request's image or template (runtime preset included). */
  async rootfsFor(
    org: OrgRecord,
    params: Pick<CreateSandboxParams, "image" | "template" | "runtime">,
  ): Promise<{ template: string; rootfs: ResolvedRootfs }> {
    if (params.image) {
      if (!this.images) throw new ApiError("not_implemented", "this server does not pull images");
      const image = await this.images.resolve(org.id, params.image);
      return { template: `image:${image.uri}`, rootfs: image };
    }
    const template = params.runtime ?? params.template;
    return { template, rootfs: await this.templates.resolve(org.id, template) };
  }

  /** A user's uid and gid from the topmost layer's /etc/passwd (content is copied before the sandbox runs). */
  private async hostAccount(layers: string[], user: string): Promise<{ uid: number; gid: number }> {
    for (const layer of layers) {
      const passwd = await readFile(path.join(layer, "etc/passwd"), "utf8").catch(() => undefined);
      if (passwd === undefined) continue;
      const account = findAccount(passwd, user);
      if (account) return { uid: account.uid, gid: account.gid };
      break;
    }
    const numeric = findAccount("", user);
    if (numeric) return numeric;
    throw new ApiError("validation_failed", `Invalid request: user: ${user} is not a user of this template or image`, {
      fields: [{ field: "user", rule: "unknown_user", message: `${user} is not in /etc/passwd` }],
    });
  }
}
