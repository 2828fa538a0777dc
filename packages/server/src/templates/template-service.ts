import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Template, TemplateBuildEvent } from "@sandpit/contract";
import { ApiError, notFound } from "../errors.js";
import { iso } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import { runCommand } from "../lib/run-command.js";
import { type BuildProgress, buildDebianRootfs, type DebianTemplateDefinition } from "./debian-builder.js";

/** The templates Sandpit knows how to build. */
export const builtinTemplates: DebianTemplateDefinition[] = [
  {
    name: "base",
    description: "Debian 13 minbase with bash, coreutils, python3, nodejs, git, curl and common tools",
    suite: "trixie",
    packages: [
      "bash",
      "coreutils",
      "python3",
      "python-is-python3",
      "nodejs",
      "git",
      "curl",
      "ca-certificates",
      "procps",
      "tar",
      "gzip",
      "xz-utils",
      "less",
      "iproute2",
    ],
  },
];

interface TemplateMeta {
  name: string;
  /** Each build lands in its own directory: running sandboxes keep the lower layer they started on. */
  rootfs: string;
  builtAt: number;
  sizeBytes: number;
}

/** A build in progress: its events so far (for late subscribers) and a stream of new ones. */
class TemplateBuild extends EventEmitter {
  readonly events: TemplateBuildEvent[] = [];
  progress: BuildProgress = { phase: "queued", percent: 0, message: "queued" };
  done: Promise<string>;
  constructor(run: (build: TemplateBuild) => Promise<string>) {
    super();
    this.done = run(this);
    this.done.catch(() => undefined);
  }
  emitEvent(event: TemplateBuildEvent) {
    if (event.type === "progress") this.progress = event;
    this.events.push(event);
    if (this.events.length > 2000) this.events.splice(0, this.events.length - 2000);
    this.emit("event", event);
  }
}

/**
 * Builds and caches templates under the templates directory: `<dir>/<name>/rootfs` (read-only lower
 * layer of every sandbox of that template) and `<dir>/<name>/template.json`. One build per template at a
 * time, also across server processes sharing the directory (a lock file).
 */
export class TemplateService {
  private readonly builds = new Map<string, TemplateBuild>();
  private readonly failures = new Map<string, string>();

  constructor(
    private readonly dir: string,
    private readonly mirror: string,
  ) {}

  private definition(name: string): DebianTemplateDefinition {
    const def = builtinTemplates.find((t) => t.name === name);
    if (!def) throw notFound("template", name);
    return def;
  }

  private async meta(name: string): Promise<TemplateMeta | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.dir, name, "template.json"), "utf8")) as TemplateMeta;
    } catch {
      return undefined;
    }
  }

  async get(name: string): Promise<Template> {
    const def = this.definition(name);
    const meta = await this.meta(name);
    const build = this.builds.get(name);
    const status = meta ? "ready" : build ? "building" : this.failures.has(name) ? "failed" : "missing";
    return {
      name,
      description: def.description,
      status,
      progress: status === "building" && build ? build.progress : null,
      error: status === "failed" ? (this.failures.get(name) ?? null) : null,
      sizeBytes: meta?.sizeBytes ?? null,
      builtAt: iso(meta?.builtAt),
    };
  }

  async list(): Promise<Template[]> {
    return Promise.all(builtinTemplates.map((t) => this.get(t.name)));
  }

  /** Returns the rootfs of a ready template, building it first when needed. */
  async ensureReady(name: string): Promise<string> {
    this.definition(name);
    const meta = await this.meta(name);
    if (meta) return meta.rootfs;
    return this.startBuild(name).done;
  }

  /** Starts (or joins) a build; `force` rebuilds a ready template. */
  startBuild(name: string, force = false): TemplateBuild {
    const def = this.definition(name);
    const existing = this.builds.get(name);
    if (existing) return existing;
    const build = new TemplateBuild(async (b) => {
      try {
        const rootfs = await this.withLock(name, async () => {
          const meta = await this.meta(name);
          if (!force && meta) return meta.rootfs;
          return this.buildNow(def, b);
        });
        this.failures.delete(name);
        b.emitEvent({ type: "done", template: await this.get(name) });
        return rootfs;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        this.failures.set(name, message);
        b.emitEvent({ type: "error", message });
        throw new ApiError("internal", `template ${name} failed to build: ${message}`);
      } finally {
        this.builds.delete(name);
      }
    });
    this.builds.set(name, build);
    return build;
  }

  /** The running build of a template, if any. */
  currentBuild(name: string): TemplateBuild | undefined {
    return this.builds.get(name);
  }

  private async buildNow(def: DebianTemplateDefinition, b: TemplateBuild): Promise<string> {
    const tmp = path.join(this.dir, def.name, `.build-${randomBase32(8)}`);
    await mkdir(tmp, { recursive: true });
    try {
      await buildDebianRootfs(
        def,
        path.join(tmp, "rootfs"),
        this.mirror,
        (p) => b.emitEvent({ type: "progress", ...p }),
        (line) => b.emitEvent({ type: "log", line }),
      );
      const sizeBytes = Number((await runCommand(["du", "-sb", path.join(tmp, "rootfs")])).split("\t")[0]);
      const builtAt = Date.now();
      const final = path.join(this.dir, def.name, `rootfs-${builtAt}`);
      await rename(path.join(tmp, "rootfs"), final);
      const meta: TemplateMeta = { name: def.name, rootfs: final, builtAt, sizeBytes };
      const metaFile = path.join(this.dir, def.name, "template.json");
      await writeFile(`${metaFile}.tmp`, JSON.stringify(meta));
      await rename(`${metaFile}.tmp`, metaFile);
      b.emitEvent({ type: "progress", phase: "done", percent: 100, message: "template ready" });
      return final;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** A lock file per template so that servers sharing the directory build it once. */
  private async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(path.join(this.dir, name), { recursive: true });
    const lock = path.join(this.dir, name, ".build.lock");
    for (;;) {
      try {
        await writeFile(lock, String(process.pid), { flag: "wx" });
        break;
      } catch {
        const holder = Number(await readFile(lock, "utf8").catch(() => "0"));
        if (!holder || !existsSync(`/proc/${holder}`)) {
          await rm(lock, { force: true });
          continue;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }
}
