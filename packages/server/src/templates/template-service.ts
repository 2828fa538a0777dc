import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { CodeLanguage, Template, TemplateBuildEvent } from "@sandpit/contract";
import { ApiError, notFound } from "../errors.js";
import { iso } from "../lib/clock.js";
import { randomBase32 } from "../lib/ids.js";
import { runCommand } from "../lib/run-command.js";
import { type BuildProgress, buildDebianRootfs, type DebianTemplateDefinition } from "./debian-builder.js";
import { buildNodeLayer } from "./node-layer.js";

/** How a sandbox made from a template or image starts, as an image's config says (all optional). */
export interface RootfsConfig {
  env: Record<string, string>;
  workingDir: string | null;
  user: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
}

/** The read-only layers of a sandbox's root filesystem (top layer first) and how it starts. */
export interface ResolvedRootfs {
  layers: string[];
  config: RootfsConfig;
}

export const emptyRootfsConfig: RootfsConfig = { env: {}, workingDir: null, user: null, entrypoint: null, cmd: null };

type LayerBuilder = (
  target: string,
  onProgress: (p: BuildProgress) => void,
  onLog: (line: string) => void,
) => Promise<void>;

/** A template Sandpit ships: a Debian root filesystem, or a layer over another template. */
type BuiltinTemplate = (
  | { name: string; description: string; debian: DebianTemplateDefinition }
  | { name: string; description: string; parent: string; buildLayer?: LayerBuilder }
) & {
  /** Code contexts whose default context starts with each sandbox, before its first cell asks. */
  warmCodeContexts?: CodeLanguage[];
  /** Its sandboxes have a desktop (display, window manager) unless they ask for another size. */
  desktop?: boolean;
};

const baseDebianPackages = [
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
];

/**
 * What gVisor (runsc 20240729, Debian 13's) lacks and the desktop's programs need, supplied by a library in
 * /etc/ld.so.preload. Built on the host (gcc is one of its build tools); it needs nothing from the template's
 * libc but `syscall`, `ptsname_r`, `open` and stdio/stat calls as old as glibc 2.33.
 * - close_range(first, ~0U, flags), which GLib calls before every spawn, answers EINVAL: without the cap at
 *   INT_MAX (as far as gVisor's descriptor table goes) xfce4-session starts no window manager, desktop or
 *   panel, and gtk-launch nothing ("Failed to close file descriptor for child process").
 * - ioctl TIOCGPTPEER and TIOCPKT on a PTY master answer ENOTTY, and VTE (xfce4-terminal) needs both ("Failed
 *   to open PTY"): the peer is opened by its name instead, and packet mode is emulated for the data-only case
 *   (each read from a master in packet mode starts with a TIOCPKT_DATA byte). A master's mode is kept per
 *   descriptor and forgotten when it closes.
 * - A file deleted while still open on the sandbox's disk cannot be checkpointed ("gofer.dentry(...).beforeSave:
 *   deleted and invalidated dentries can't be restored"), and a failed checkpoint kills the sandbox. Chromium
 *   maps its metrics into ~/.config/chromium/BrowserMetrics/*.pma at start (before any flag or feature is
 *   read) and, its metrics reporting being off, deletes that file a few seconds later while keeping it
 *   mapped: no sandbox with a Chromium running could be paused. unlink/unlinkat/remove of a regular file that
 *   the calling process maps (same inode and name in /proc/self/maps), outside tmpfs (whose deleted files
 *   checkpoint fine), leaves it in place and succeeds; Chromium deletes the stale file at its next start.
 */
const desktopPreloadSource = [
  "#define _GNU_SOURCE",
  "#include <errno.h>",
  "#include <fcntl.h>",
  "#include <limits.h>",
  "#include <stdarg.h>",
  "#include <stdio.h>",
  "#include <stdlib.h>",
  "#include <string.h>",
  "#include <sys/ioctl.h>",
  "#include <sys/stat.h>",
  "#include <sys/syscall.h>",
  "#include <sys/vfs.h>",
  "#include <unistd.h>",
  "static unsigned char packet_mode[4096];",
  "int close_range(unsigned int first, unsigned int last, int flags) {",
  "  if (last > INT_MAX) last = INT_MAX;",
  "  return (int)syscall(SYS_close_range, first, last, flags);",
  "}",
  "int ioctl(int fd, unsigned long request, ...) {",
  "  va_list args;",
  "  va_start(args, request);",
  "  void *arg = va_arg(args, void *);",
  "  va_end(args);",
  "  if (request == TIOCGPTPEER) {",
  "    char name[64];",
  "    if (ptsname_r(fd, name, sizeof name) != 0) return -1;",
  "    return open(name, (int)(long)arg);",
  "  }",
  "  if (request == TIOCPKT && fd >= 0 && fd < (int)sizeof packet_mode) {",
  "    char name[64];",
  "    if (ptsname_r(fd, name, sizeof name) != 0) return -1;",
  "    packet_mode[fd] = *(int *)arg != 0;",
  "    return 0;",
  "  }",
  "  return (int)syscall(SYS_ioctl, fd, request, arg);",
  "}",
  "ssize_t read(int fd, void *buf, size_t count) {",
  "  if (fd < 0 || fd >= (int)sizeof packet_mode || !packet_mode[fd] || count < 2)",
  "    return syscall(SYS_read, fd, buf, count);",
  "  ssize_t n = syscall(SYS_read, fd, (char *)buf + 1, count - 1);",
  "  if (n <= 0) return n;",
  "  ((char *)buf)[0] = 0;",
  "  return n + 1;",
  "}",
  "int close(int fd) {",
  "  if (fd >= 0 && fd < (int)sizeof packet_mode) packet_mode[fd] = 0;",
  "  return (int)syscall(SYS_close, fd);",
  "}",
  "static int mapped_here(int dirfd, const char *path) {",
  "  struct stat st;",
  "  struct statfs fs;",
  "  if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return 0;",
  "  int known = path[0] == 0x2f || dirfd == AT_FDCWD ? statfs(path, &fs) == 0 : fstatfs(dirfd, &fs) == 0;",
  "  if (known && fs.f_type == 0x01021994) return 0;",
  "  const char *slash = strrchr(path, 0x2f);",
  "  const char *base = slash ? slash + 1 : path;",
  '  FILE *maps = fopen("/proc/self/maps", "re");',
  "  if (!maps) return 0;",
  "  char line[4352];",
  "  int found = 0;",
  "  while (!found && fgets(line, sizeof line, maps)) {",
  "    unsigned long inode;",
  "    int name = 0;",
  '    if (sscanf(line, "%*s %*s %*s %*s %lu %n", &inode, &name) < 1 || inode != st.st_ino || !name) continue;',
  '    line[strcspn(line, "\\n")] = 0;',
  "    const char *mapped = strrchr(line + name, 0x2f);",
  "    found = mapped && strcmp(mapped + 1, base) == 0;",
  "  }",
  "  fclose(maps);",
  "  return found;",
  "}",
  "int unlinkat(int dirfd, const char *path, int flags) {",
  "  if (!(flags & AT_REMOVEDIR) && mapped_here(dirfd, path)) return 0;",
  "  return (int)syscall(SYS_unlinkat, dirfd, path, flags);",
  "}",
  "int unlink(const char *path) {",
  "  return unlinkat(AT_FDCWD, path, 0);",
  "}",
  "int remove(const char *path) {",
  "  int result = unlinkat(AT_FDCWD, path, 0);",
  "  return result != 0 && errno == EISDIR ? unlinkat(AT_FDCWD, path, AT_REMOVEDIR) : result;",
  "}",
];
const desktopPreloadHook = [
  "printf '%s\\n'",
  ...desktopPreloadSource.map((line) => `'${line}'`),
  '| cc -O2 -shared -fPIC -x c -o "$1/usr/local/lib/libsandpit-gvisor-compat.so" -',
  '&& echo /usr/local/lib/libsandpit-gvisor-compat.so >> "$1/etc/ld.so.preload"',
].join(" ");

export const builtinTemplates: BuiltinTemplate[] = [
  {
    name: "base",
    description: "Debian 13 minbase with bash, coreutils, python3, nodejs, git, curl and common tools",
    debian: {
      name: "base",
      description: "",
      suite: "trixie",
      packages: baseDebianPackages,
    },
  },
  {
    name: "code-interpreter",
    description:
      "Python 3.13 with a Jupyter kernel (ipykernel) and numpy, pandas, matplotlib, seaborn, scipy, sympy, " +
      "requests, beautifulsoup4 and openpyxl; Node.js and bash: for code contexts",
    warmCodeContexts: ["python"],
    debian: {
      name: "code-interpreter",
      description: "",
      suite: "trixie",
      packages: [
        ...baseDebianPackages,
        "python3-ipykernel",
        "python3-jupyter-client",
        "python3-numpy",
        "python3-pandas",
        "python3-matplotlib",
        "python3-seaborn",
        "python3-scipy",
        "python3-sympy",
        "python3-requests",
        "python3-bs4",
        "python3-openpyxl",
      ],
    },
  },
  {
    name: "desktop",
    desktop: true,
    description:
      "A graphical desktop for computer-use agents: a virtual display (Xvfb), Xfce, Chromium, xdotool, " +
      "scrot, x11vnc and noVNC, on the base template's tools",
    debian: {
      name: "desktop",
      description: "",
      suite: "trixie",
      packages: [
        ...baseDebianPackages,
        "xvfb",
        "x11-utils",
        "x11-xserver-utils",
        "xfce4-session",
        "xfwm4",
        "xfdesktop4",
        "xfce4-panel",
        "xfce4-terminal",
        "xfconf",
        "dbus-x11",
        "xdotool",
        "wmctrl",
        "scrot",
        "x11vnc",
        "novnc",
        "websockify",
        "chromium",
        "xdg-utils",
        "libgtk-3-bin",
        "net-tools",
        "fonts-dejavu-core",
        "python3-xlib",
        "python3-pil",
      ],
      hooks: [
        // Where E2B's desktop SDK starts noVNC from (`/opt/noVNC/utils/novnc_proxy`).
        'ln -s /usr/share/novnc "$1/opt/noVNC"',
        // gVisor is the sandbox: Chromium's own (namespaces, /dev/shm) adds nothing and does not start in it.
        'mkdir -p "$1/etc/chromium.d" && echo \'export CHROMIUM_FLAGS="$CHROMIUM_FLAGS --no-sandbox --disable-dev-shm-usage"\' > "$1/etc/chromium.d/sandpit"',
        // x11vnc runs threaded whoever starts it (its rc file, read from $HOME): under gVisor the unthreaded
        // one accepts a new connection only every 10-25 s (measured), past noVNC's patience — E2B's desktop
        // SDK starts it so. Threaded, a viewer gets its first picture in under a second.
        'for home in "$1/root" "$1/home/user" "$1/etc/skel"; do echo threads > "$home/.x11vncrc"; done && chown 1000:1000 "$1/home/user/.x11vncrc"',
        desktopPreloadHook,
      ],
    },
  },
  // Debian 13's python3 is 3.13: the preset is the base template under the runtime's name.
  { name: "python3.13", description: "Python 3.13 (Debian 13's python3) on the base template", parent: "base" },
  {
    name: "node22",
    description: "Node.js 22 and npm in /usr/local on the base template",
    parent: "base",
    buildLayer: (target, onProgress, onLog) => buildNodeLayer(22, target, onProgress, onLog),
  },
  {
    name: "node24",
    description: "Node.js 24 and npm in /usr/local on the base template",
    parent: "base",
    buildLayer: (target, onProgress, onLog) => buildNodeLayer(24, target, onProgress, onLog),
  },
];

interface TemplateMeta {
  name: string;
  description: string;
  /** Every build lands in its own directory: running sandboxes keep the layers they started on. */
  layers: string[];
  config: RootfsConfig;
  builtAt: number;
  sizeBytes: number;
  /** What it was built from (built-in templates): a changed definition is rebuilt on next use. */
  definition?: string;
  /** Set on an organisation's own templates. */
  custom?: { orgId: string; from: string };
  /** Written by versions that had a single rootfs directory per template. */
  rootfs?: string;
}

/** A build in progress: its events so far (for late subscribers) and a stream of new ones. */
export class TemplateBuild extends EventEmitter {
  readonly events: TemplateBuildEvent[] = [];
  progress: BuildProgress = { phase: "queued", percent: 0, message: "queued" };
  done: Promise<ResolvedRootfs>;
  constructor(run: (build: TemplateBuild) => Promise<ResolvedRootfs>) {
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
  progressTo(p: BuildProgress) {
    this.emitEvent({ type: "progress", ...p });
  }
  log(line: string) {
    this.emitEvent({ type: "log", line });
  }
}

/** What a custom template build produces: its own layer (a directory to move in place) over a parent. */
export interface CustomBuildResult {
  layerDir: string;
  parentLayers: string[];
  config: RootfsConfig;
}

/** Builds an organisation's template from its definition into `workDir`. */
export type CustomTemplateBuilder = (
  orgId: string,
  name: string,
  workDir: string,
  build: TemplateBuild,
) => Promise<CustomBuildResult & { from: string; description: string }>;

const ORGS_DIR = "orgs";

/** Bumped when the way built-in templates are built changes (hooks, layout), so that caches rebuild. */
const BUILDER_VERSION = 2;

/**
 * Builds and caches templates under the templates directory: `<dir>/<name>/` for the built-in ones and
 * `<dir>/orgs/<org>/<name>/` for an organisation's own, each with `template.json` (its layers, top
 * first, and start config) and one `layer-<time>` directory per build. One build per template at a
 * time, also across server processes sharing the directory (a lock file).
 */
export class TemplateService {
  private readonly builds = new Map<string, TemplateBuild>();
  private readonly failures = new Map<string, string>();
  constructor(
    private readonly dir: string,
    private readonly mirror: string,
    /**
     * Builds organisations' own templates; absent where only built-ins are built. Late-bound: the builder
     * needs sandboxes, which need templates, so composition passes a function that reaches it once it exists.
     */
    private readonly customBuilder?: CustomTemplateBuilder,
  ) {}

  private builtin(name: string): BuiltinTemplate | undefined {
    return builtinTemplates.find((t) => t.name === name);
  }

  /**
   * A built-in template's definition as a string that changes when its build would: its packages, its
   * parent's build, the builder's version.
   */
  private async definitionOf(def: BuiltinTemplate): Promise<string> {
    if ("debian" in def) {
      const { suite, packages, hooks = [] } = def.debian;
      return `v${BUILDER_VERSION}:debian:${suite}:${packages.join(",")}${hooks.length ? `:hooks:${hooks.join("\n")}` : ""}`;
    }
    const parent = await this.meta(this.templateDir(null, def.parent));
    return `v${BUILDER_VERSION}:layer:${def.name}:over:${def.parent}@${parent?.builtAt ?? "unbuilt"}`;
  }

  /** A template's meta when it is ready to use: built, and (built-in) from its current definition. */
  private async currentMeta(orgId: string | null, name: string): Promise<TemplateMeta | undefined> {
    const meta = await this.meta(this.templateDir(orgId, name));
    const def = this.builtin(name);
    if (!meta || !def) return meta;
    if (!("debian" in def) && !(await this.currentMeta(null, def.parent))) return undefined;
    return meta.definition === (await this.definitionOf(def)) ? meta : undefined;
  }

  /** The code contexts a template's sandboxes start warm (its Python kernel, for code-interpreter). */
  warmCodeContexts(name: string): CodeLanguage[] {
    return this.builtin(name)?.warmCodeContexts ?? [];
  }

  /**
   * Whether a template's sandboxes get a desktop: `default` (the desktop template), `none` (a built-in
   * template without X), `unknown` (templates and images of users: they may have X, Xfce and python3-xlib).
   */
  desktopSupport(name: string): "default" | "none" | "unknown" {
    const def = this.builtin(name);
    if (!def) return "unknown";
    return def.desktop ? "default" : "none";
  }

  isBuiltin(name: string): boolean {
    return this.builtin(name) !== undefined;
  }

  /** Where a template lives; `orgId` is the caller's organisation (built-in names win). */
  templateDir(orgId: string | null, name: string): string {
    if (this.builtin(name) || orgId === null) return path.join(this.dir, name);
    return path.join(this.dir, ORGS_DIR, orgId, name);
  }

  private buildKey(orgId: string | null, name: string): string {
    return this.builtin(name) || orgId === null ? name : `${orgId}/${name}`;
  }

  private async meta(dir: string): Promise<TemplateMeta | undefined> {
    try {
      const meta = JSON.parse(await readFile(path.join(dir, "template.json"), "utf8")) as TemplateMeta;
      if (!meta.layers && meta.rootfs) return { ...meta, layers: [meta.rootfs], config: emptyRootfsConfig };
      return meta;
    } catch {
      return undefined;
    }
  }

  async get(orgId: string | null, name: string): Promise<Template> {
    const def = this.builtin(name);
    const meta = await this.currentMeta(orgId, name);
    const key = this.buildKey(orgId, name);
    const build = this.builds.get(key);
    if (!def && !meta && !build && !this.failures.has(key)) throw notFound("template", name);
    const status = build ? "building" : meta ? "ready" : this.failures.has(key) ? "failed" : "missing";
    return {
      name,
      kind: def ? "builtin" : "custom",
      description: def?.description ?? meta?.description ?? "",
      from: def && "parent" in def ? def.parent : (meta?.custom?.from ?? null),
      status,
      progress: status === "building" && build ? build.progress : null,
      error: status === "failed" ? (this.failures.get(key) ?? null) : null,
      sizeBytes: meta?.sizeBytes ?? null,
      builtAt: iso(meta?.builtAt),
    };
  }

  /** The built-in templates and the organisation's own. */
  async list(orgId: string): Promise<Template[]> {
    const own = await readdir(path.join(this.dir, ORGS_DIR, orgId)).catch(() => [] as string[]);
    const names = [...builtinTemplates.map((t) => t.name), ...own.filter((n) => !n.startsWith("."))];
    const inFlight = [...this.builds.keys()]
      .filter((k) => k.startsWith(`${orgId}/`))
      .map((k) => k.slice(orgId.length + 1));
    const all = [...new Set([...names, ...inFlight])];
    const templates = await Promise.all(all.map((n) => this.get(orgId, n).catch(() => undefined)));
    return templates.filter((t): t is Template => t !== undefined);
  }

  /** The layers and config of a ready template, building a built-in one first when needed. */
  async resolve(orgId: string | null, name: string): Promise<ResolvedRootfs> {
    const meta = await this.currentMeta(orgId, name);
    if (meta && !this.builds.has(this.buildKey(orgId, name))) return { layers: meta.layers, config: meta.config };
    const running = this.builds.get(this.buildKey(orgId, name));
    if (running) return running.done;
    if (!this.builtin(name)) {
      if (this.failures.has(this.buildKey(orgId, name))) {
        throw new ApiError("conflict", `template ${name} failed to build; rebuild it first`);
      }
      throw notFound("template", name);
    }
    return this.startBuild(name).done;
  }

  /** Starts (or joins) the build of a built-in template; `force` rebuilds a ready one. */
  startBuild(name: string, force = false): TemplateBuild {
    const def = this.builtin(name);
    if (!def) throw notFound("template", name);
    return this.track(null, name, async (b) =>
      this.withLock(this.templateDir(null, name), async () => {
        const meta = await this.currentMeta(null, name);
        if (!force && meta) return { layers: meta.layers, config: meta.config };
        return this.buildBuiltin(def, b);
      }),
    );
  }

  /** Builds an organisation's own template with the custom builder (a rebuild replaces it). */
  startCustomBuild(orgId: string, name: string): TemplateBuild {
    if (this.builtin(name)) {
      throw new ApiError("conflict", `template ${name} is a built-in template; choose another name`);
    }
    const builder = this.customBuilder;
    if (!builder) throw new Error("no custom template builder is wired");
    const key = this.buildKey(orgId, name);
    if (this.builds.has(key)) throw new ApiError("conflict", `template ${name} is already being built`);
    const dir = this.templateDir(orgId, name);
    return this.track(orgId, name, async (b) =>
      this.withLock(dir, async () => {
        const work = path.join(dir, `.build-${randomBase32(8)}`);
        await mkdir(work, { recursive: true });
        try {
          const result = await builder(orgId, name, work, b);
          return await this.commit(
            dir,
            name,
            result.description,
            result.layerDir,
            result.parentLayers,
            result.config,
            b,
            { custom: { orgId, from: result.from } },
          );
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      }),
    );
  }

  /** Deletes an organisation's template; sandboxes running on it keep their layers until they end. */
  async deleteCustom(orgId: string, name: string): Promise<void> {
    if (this.builtin(name)) throw new ApiError("forbidden", `template ${name} is built in and cannot be deleted`);
    const dir = this.templateDir(orgId, name);
    if (!(await this.meta(dir)) && !this.failures.has(this.buildKey(orgId, name))) throw notFound("template", name);
    if (this.builds.has(this.buildKey(orgId, name))) throw new ApiError("conflict", `template ${name} is being built`);
    this.failures.delete(this.buildKey(orgId, name));
    // Only the record goes: its layers stay where they are, for sandboxes and snapshots that run on them.
    await rm(path.join(dir, "template.json"), { force: true });
  }

  /** The running build of a template, if any. */
  currentBuild(orgId: string | null, name: string): TemplateBuild | undefined {
    return this.builds.get(this.buildKey(orgId, name));
  }

  private track(orgId: string | null, name: string, run: (b: TemplateBuild) => Promise<ResolvedRootfs>) {
    const key = this.buildKey(orgId, name);
    const existing = this.builds.get(key);
    if (existing) return existing;
    const build = new TemplateBuild(async (b) => {
      try {
        const resolved = await run(b);
        this.failures.delete(key);
        this.builds.delete(key);
        b.emitEvent({ type: "done", template: await this.get(orgId, name) });
        return resolved;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        this.failures.set(key, message);
        this.builds.delete(key);
        b.emitEvent({ type: "error", message });
        if (e instanceof ApiError) throw e;
        throw new ApiError("internal", `template ${name} failed to build: ${message}`);
      }
    });
    this.builds.set(key, build);
    return build;
  }

  private async buildBuiltin(def: BuiltinTemplate, b: TemplateBuild): Promise<ResolvedRootfs> {
    const dir = this.templateDir(null, def.name);
    const work = path.join(dir, `.build-${randomBase32(8)}`);
    await mkdir(work, { recursive: true });
    try {
      if ("debian" in def) {
        const target = path.join(work, "layer");
        await buildDebianRootfs(
          def.debian,
          target,
          this.mirror,
          (p) => b.progressTo(p),
          (line) => b.log(line),
        );
        return await this.commit(dir, def.name, def.description, target, [], emptyRootfsConfig, b, {
          definition: await this.definitionOf(def),
        });
      }
      b.progressTo({ phase: "parent", percent: 0, message: `template ${def.parent}` });
      const parent = await this.resolve(null, def.parent);
      const definition = { definition: await this.definitionOf(def) };
      if (!def.buildLayer) {
        return this.commit(dir, def.name, def.description, null, parent.layers, parent.config, b, definition);
      }
      const target = path.join(work, "layer");
      await mkdir(target, { recursive: true });
      await def.buildLayer(
        target,
        (p) => b.progressTo(p),
        (line) => b.log(line),
      );
      return await this.commit(dir, def.name, def.description, target, parent.layers, parent.config, b, definition);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Moves a finished layer in place and records the template (atomically: a rename of its meta file). */
  private async commit(
    dir: string,
    name: string,
    description: string,
    layerDir: string | null,
    parentLayers: string[],
    config: RootfsConfig,
    b: TemplateBuild,
    extra: Pick<TemplateMeta, "definition" | "custom"> = {},
  ): Promise<ResolvedRootfs> {
    const builtAt = Date.now();
    let layers = parentLayers;
    let sizeBytes = 0;
    if (layerDir) {
      sizeBytes = Number((await runCommand(["du", "-sb", layerDir])).split("\t")[0]);
      const final = path.join(dir, `layer-${builtAt}`);
      await rename(layerDir, final);
      layers = [final, ...parentLayers];
    }
    const meta: TemplateMeta = { name, description, layers, config, builtAt, sizeBytes, ...extra };
    const metaFile = path.join(dir, "template.json");
    await writeFile(`${metaFile}.tmp`, JSON.stringify(meta));
    await rename(`${metaFile}.tmp`, metaFile);
    b.progressTo({ phase: "done", percent: 100, message: "template ready" });
    return { layers, config };
  }

  /** A lock file per template so that servers sharing the directory build it once. */
  private async withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
    await mkdir(dir, { recursive: true });
    const lock = path.join(dir, ".build.lock");
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
