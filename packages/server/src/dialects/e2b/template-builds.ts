import { randomUUID, timingSafeEqual } from "node:crypto";
import { PassThrough, Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import type { TemplateBuildEvent } from "@sandpit/contract";
import tar from "tar-stream";
import type { OrgRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { randomBase32 } from "../../lib/ids.js";
import { uploadTooLarge } from "../../lib/upload-budget.js";
import type { AppServices } from "../../services/index.js";
import type { TemplateBuild } from "../../templates/template-service.js";
import { type TemplateBuildStart, translateTemplate } from "./template-steps.js";

/** What E2B's template builds use. */
export type E2bTemplateBuildServices = Pick<AppServices, "templates" | "templateBuilds" | "maxUploadBytes">;

type LogLevel = "debug" | "info" | "warn" | "error";

/** E2B's `BuildLogEntry`. */
interface BuildLogEntry {
  timestamp: string;
  level: LogLevel;
  message: string;
  step?: string;
}

/** A build E2B's SDK asked for: requested (files come), started (Sandpit builds it), then done. */
interface PendingBuild {
  org: OrgRecord;
  name: string;
  buildID: string;
  /** Authorises the file uploads, which come without the API key (to the URL this dialect hands out). */
  uploadToken: string;
  resources: { vcpus?: number; memoryMb?: number };
  uploads: Map<string, Buffer>;
  uploadedBytes: number;
  createdAt: number;
  build?: TemplateBuild;
  status: "waiting" | "building" | "ready" | "error";
  logs: BuildLogEntry[];
  reason?: { message: string; step?: string };
}

/** Requested builds are kept this long without being started (E2B's SDK starts them within seconds). */
const PENDING_TTL_MS = 60 * 60 * 1000;
/** Requested and finished builds kept per organisation: status polls and uploads find them. */
const BUILDS_PER_ORG = 16;
/** Log entries kept per build; beyond it the build says so once. */
const MAX_LOG_ENTRIES = 20_000;
/** Sandpit's build context travels base64 in a request of at most 32 MiB. */
const MAX_CONTEXT_BYTES = 24 * 1024 * 1024;

const sameSecret = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * E2B's template builds (`Template.build`) over Sandpit's Dockerfile templates: a requested build holds the
 * COPY steps' uploads in memory until the SDK starts it; then its definition becomes a Dockerfile and its
 * uploads one build context, and Sandpit's builder (a real build sandbox) builds it. Status and logs are
 * the build's own events. Builds live in the memory of the node that took the request.
 */
export class E2bTemplateBuilds {
  private readonly builds = new Map<string, PendingBuild>();

  constructor(private readonly services: E2bTemplateBuildServices) {}

  private key(orgId: string, name: string) {
    return `${orgId}/${name}`;
  }

  private prune(orgId: string) {
    const now = Date.now();
    const own = [...this.builds.entries()].filter(([k]) => k.startsWith(`${orgId}/`));
    for (const [k, b] of own) {
      if (b.status === "waiting" && now - b.createdAt > PENDING_TTL_MS) this.builds.delete(k);
    }
    const done = own.filter(([, b]) => b.status === "ready" || b.status === "error");
    for (const [k] of done.slice(0, Math.max(0, own.length - BUILDS_PER_ORG + 1))) this.builds.delete(k);
  }

  /** `POST /v3/templates`: a new build of the template `name` (which is also its templateID). */
  request(org: OrgRecord, name: string, resources: PendingBuild["resources"]) {
    if (this.services.templates.isBuiltin(name)) {
      throw new ApiError("conflict", `template ${name} is a built-in template; choose another name`);
    }
    const current = this.builds.get(this.key(org.id, name));
    if (current?.status === "building" || this.services.templates.currentBuild(org.id, name)) {
      throw new ApiError("conflict", `template ${name} is already being built`);
    }
    this.prune(org.id);
    const pending: PendingBuild = {
      org,
      name,
      buildID: randomUUID(),
      uploadToken: randomBase32(32),
      resources,
      uploads: new Map(),
      uploadedBytes: 0,
      createdAt: Date.now(),
      status: "waiting",
      logs: [],
    };
    this.builds.set(this.key(org.id, name), pending);
    return pending;
  }

  private find(orgId: string, templateID: string, buildID?: string): PendingBuild {
    const build = this.builds.get(this.key(orgId, templateID));
    if (!build || (buildID !== undefined && build.buildID !== buildID)) {
      throw new ApiError("not_found", `build ${buildID ?? ""} of template ${templateID} not found`.replace("  ", " "));
    }
    return build;
  }

  /** `GET /templates/{templateID}/files/{hash}`: where to upload a COPY step's files, unless they are there. */
  uploadLink(org: OrgRecord, templateID: string, hash: string, origin: string) {
    const build = this.find(org.id, templateID);
    if (build.uploads.has(hash)) return { present: true };
    const url = `${origin}/e2b/templates/${encodeURIComponent(templateID)}/files/${encodeURIComponent(hash)}/upload?buildID=${build.buildID}&token=${build.uploadToken}`;
    return { present: false, url, headers: {} };
  }

  /** The upload itself (a tar or tar.gz of the step's files), authorised by the token in its URL. */
  async receiveUpload(
    orgTemplate: { templateID: string; hash: string; buildID: string; token: string },
    body: Readable,
  ) {
    const build = [...this.builds.values()].find(
      (b) => b.name === orgTemplate.templateID && b.buildID === orgTemplate.buildID,
    );
    if (!build || !sameSecret(build.uploadToken, orgTemplate.token)) {
      throw new ApiError("unauthorized", "invalid or expired upload link");
    }
    if (build.status !== "waiting") throw new ApiError("conflict", `build ${build.buildID} has already started`);
    const bytes = await buffer(body);
    if (build.uploadedBytes + bytes.length > MAX_CONTEXT_BYTES) {
      throw new ApiError(
        "payload_too_large",
        `the uploads of one build may add up to ${MAX_CONTEXT_BYTES} bytes (Sandpit's build context)`,
        { limit: MAX_CONTEXT_BYTES },
      );
    }
    build.uploadedBytes += bytes.length;
    build.uploads.set(orgTemplate.hash, bytes);
  }

  /** `POST /v2/templates/{templateID}/builds/{buildID}`: translates the template and starts Sandpit's build. */
  async start(org: OrgRecord, templateID: string, buildID: string, body: TemplateBuildStart): Promise<void> {
    const build = this.find(org.id, templateID, buildID);
    if (build.status !== "waiting") throw new ApiError("conflict", `build ${buildID} has already started`);
    const translated = translateTemplate(body);
    for (const hash of translated.filesHashes) {
      if (!build.uploads.has(hash)) {
        throw new ApiError("validation_failed", `Invalid request: steps: the files of ${hash} were not uploaded`, {
          fields: [{ field: "steps", rule: "uploaded", message: `files ${hash} were not uploaded` }],
        });
      }
    }
    const context = translated.filesHashes.length
      ? await contextOf(
          translated.filesHashes.map((hash) => [hash, build.uploads.get(hash)!] as const),
          this.services.maxUploadBytes,
        )
      : undefined;
    const submitted = await this.services.templateBuilds.submit(org, {
      name: build.name,
      description: "built with E2B's Template.build",
      dockerfile: translated.dockerfile,
      ...(context ? { context: context.toString("base64") } : {}),
      ...(translated.fromAuth ? { fromAuth: translated.fromAuth } : {}),
      resources: {
        ...(build.resources.vcpus !== undefined ? { vcpus: build.resources.vcpus } : {}),
        ...(build.resources.memoryMb !== undefined ? { memoryMb: build.resources.memoryMb } : {}),
      },
    });
    build.uploads.clear();
    build.status = "building";
    build.build = submitted;
    for (const note of translated.notes) this.log(build, "warn", note);
    const stepOf = (message: string) => {
      const line = /Dockerfile line (\d+)/.exec(message)?.[1];
      const step = line === undefined ? undefined : translated.stepOfLine.get(Number(line));
      return step === undefined ? undefined : step === 0 ? "base" : String(step);
    };
    const onEvent = (e: TemplateBuildEvent) => {
      switch (e.type) {
        case "progress":
          this.log(build, "info", e.message);
          return;
        case "log":
          this.log(build, "info", e.line);
          return;
        case "done":
          build.status = "ready";
          submitted.off("event", onEvent);
          return;
        case "error": {
          const step = stepOf(e.message);
          const message = e.message.replace(/Dockerfile line \d+: /, "");
          build.reason = { message, ...(step !== undefined ? { step } : {}) };
          this.log(build, "error", message, step);
          build.status = "error";
          submitted.off("event", onEvent);
          return;
        }
      }
    };
    for (const e of submitted.events) onEvent(e);
    if (build.status === "building") submitted.on("event", onEvent);
  }

  private log(build: PendingBuild, level: LogLevel, message: string, step?: string) {
    if (build.logs.length > MAX_LOG_ENTRIES) return;
    const entry: BuildLogEntry = {
      timestamp: new Date().toISOString(),
      level,
      message:
        build.logs.length === MAX_LOG_ENTRIES
          ? `log limit of ${MAX_LOG_ENTRIES} lines reached; later lines dropped`
          : message,
      ...(step !== undefined ? { step } : {}),
    };
    build.logs.push(entry);
  }

  /** `GET /templates/{templateID}/builds/{buildID}/status`: E2B's TemplateBuildInfo, logs from `logsOffset`. */
  status(org: OrgRecord, templateID: string, buildID: string, logsOffset: number, limit: number) {
    const build = this.find(org.id, templateID, buildID);
    return {
      buildID: build.buildID,
      templateID: build.name,
      status: build.status,
      logEntries: build.logs.slice(logsOffset, logsOffset + limit),
      logs: [],
      ...(build.reason ? { reason: { ...build.reason, logEntries: [] } } : {}),
    };
  }

  /** The build of a template this dialect started, for its listing. */
  latest(orgId: string, name: string): Pick<PendingBuild, "buildID" | "status"> | undefined {
    return this.builds.get(this.key(orgId, name));
  }
}

/**
 * The COPY steps' uploads (each a tar or tar.gz of the step's files, paths relative to the SDK's context)
 * as one build context, each under its own `<hash>/` directory. Regular files, directories and symbolic
 * links are kept (Sandpit's builder copies a link only when it stays inside the context); anything else
 * is refused.
 */
export async function contextOf(uploads: (readonly [string, Buffer])[], limit: number): Promise<Buffer> {
  const pack = tar.pack();
  const packed = buffer(pack);
  // Counted on what the uploads unpack to (the entries' declared sizes, before reading them): a small
  // gzip cannot become a huge context in memory.
  const budget = { used: 0, limit };
  for (const [hash, archive] of uploads) {
    const gzipped = archive[0] === 0x1f && archive[1] === 0x8b;
    const extract = tar.extract();
    const reading = pipeline(Readable.from([archive]), gzipped ? zlib.createGunzip() : new PassThrough(), extract);
    reading.catch(() => undefined);
    try {
      await copyEntries(hash, extract, pack, budget);
      await reading;
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw new ApiError(
        "bad_request",
        `the upload of ${hash} is not a tar or tar.gz archive: ${(e as Error).message}`,
      );
    }
  }
  pack.finalize();
  return packed;
}

async function copyEntries(
  hash: string,
  extract: tar.Extract,
  pack: tar.Pack,
  budget: { used: number; limit: number },
) {
  for await (const entry of extract) {
    const { name, type, mode, linkname, mtime, size = 0 } = entry.header;
    const target = `${hash}/${name.replace(/^\.?\/+/, "")}`;
    if (name.split("/").includes("..")) {
      entry.resume();
      throw new ApiError("bad_request", `the upload of ${hash} has an entry outside its context: ${name}`);
    }
    if (type === "file" || type === "contiguous-file") {
      budget.used += size;
      if (budget.used > budget.limit) {
        entry.resume();
        throw uploadTooLarge(budget.limit);
      }
      const content = await buffer(Readable.from(entry, { objectMode: false }));
      pack.entry({ name: target, type: "file", mode, mtime, size: content.length }, content);
    } else if (type === "directory" || type === "symlink") {
      entry.resume();
      pack.entry({ name: target, type, mode, mtime, ...(type === "symlink" ? { linkname } : {}) });
    } else {
      entry.resume();
      throw new ApiError("bad_request", `the upload of ${hash} has a ${type} entry (${name}): not supported`);
    }
  }
}
