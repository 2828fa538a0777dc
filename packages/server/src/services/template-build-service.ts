import { createReadStream } from "node:fs";
import { lstat, mkdir, readdir, readFile, realpath, writeFile } from "node:fs/promises";
import path from "node:path";
import { type CreateTemplateRequest, createSandboxRequestSchema, createTemplateRequestSchema } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { z } from "zod";
import { type AgentClient, AgentError } from "../agent/agent-client.js";
import type { OrgRecord, SandboxRecord } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { CommandFailedError, runCommand } from "../lib/run-command.js";
import { assertArchiveWithinLimit } from "../lib/upload-budget.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import { DockerfileError, type DockerfileStep, expandVars, parseDockerfile } from "../templates/dockerfile.js";
import type { CustomBuildResult, RootfsConfig, TemplateBuild, TemplateService } from "../templates/template-service.js";
import type { ExecService } from "./exec-service.js";
import type { SandboxOrigins } from "./sandbox-origin.js";
import type { SandboxService } from "./sandbox-service.js";

type TemplateRequest = z.output<typeof createTemplateRequestSchema>;

/** A definition as kept beside the template, so that it can be rebuilt. */
interface StoredDefinition {
  dockerfile: string;
  description: string;
  resources: TemplateRequest["resources"];
  hasContext: boolean;
}

/** The build state Docker keeps between instructions. */
interface BuildState {
  env: Record<string, string>;
  workdir: string;
  user: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|\\]/g, "\\$&")
    .replace(/\*/g, "[^/]*")
    .replace(/\?/g, "[^/]");
  return new RegExp(`^${escaped}$`);
}

/**
 * Builds an organisation's templates from a Dockerfile subset. FROM starts a build sandbox (a real gVisor
 * sandbox, under the organisation's quota) from a template or an image; each RUN executes in it; COPY
 * writes files from the uploaded context; ENV, WORKDIR, USER, ENTRYPOINT and CMD shape the config. What
 * the steps wrote becomes the template's read-only layer over its parent's layers.
 */
export class TemplateBuildService {
  private readonly orgs = new Map<string, OrgRecord>();
  private readonly fromAuth = new Map<string, TemplateRequest["fromAuth"]>();

  constructor(
    private readonly templates: TemplateService,
    private readonly sandboxes: SandboxService,
    private readonly origins: SandboxOrigins,
    private readonly exec: ExecService,
    private readonly runtime: SandboxRuntime,
    private readonly log: FastifyBaseLogger,
    /** The upload limit, on what the build context unpacks to. */
    private readonly maxContextBytes: number,
  ) {}

  /** Stores the definition and starts the build; its progress and logs are the returned build's events. */
  async submit(org: OrgRecord, body: CreateTemplateRequest): Promise<TemplateBuild> {
    const req = createTemplateRequestSchema.parse(body);
    try {
      parseDockerfile(req.dockerfile);
    } catch (e) {
      if (!(e instanceof DockerfileError)) throw e;
      throw new ApiError("validation_failed", `Invalid request: dockerfile: ${e.message}`, {
        fields: [{ field: "dockerfile", rule: "syntax", message: e.message }],
      });
    }
    if (this.templates.isBuiltin(req.name)) {
      throw new ApiError("conflict", `template ${req.name} is a built-in template; choose another name`);
    }
    if (this.templates.currentBuild(org.id, req.name)) {
      throw new ApiError("conflict", `template ${req.name} is already being built`);
    }
    const context = req.context === undefined ? undefined : Buffer.from(req.context, "base64");
    // Measured before anything is stored: it is unpacked on the host.
    if (context) await assertArchiveWithinLimit(context, this.maxContextBytes, "context");
    const definitionDir = path.join(this.templates.templateDir(org.id, req.name), "definition");
    await mkdir(definitionDir, { recursive: true });
    if (context) await writeFile(path.join(definitionDir, "context.tar"), context);
    const stored: StoredDefinition = {
      dockerfile: req.dockerfile,
      description: req.description,
      resources: req.resources,
      hasContext: req.context !== undefined,
    };
    await writeFile(path.join(definitionDir, "definition.json"), JSON.stringify(stored));
    this.orgs.set(org.id, org);
    this.fromAuth.set(`${org.id}/${req.name}`, req.fromAuth);
    return this.templates.startCustomBuild(org.id, req.name);
  }

  /** The TemplateService's custom builder: runs a submitted definition's steps into `work`. */
  async build(orgId: string, name: string, work: string, b: TemplateBuild) {
    const definitionDir = path.join(this.templates.templateDir(orgId, name), "definition");
    const def = JSON.parse(await readFile(path.join(definitionDir, "definition.json"), "utf8")) as StoredDefinition;
    const fromAuth = this.fromAuth.get(`${orgId}/${name}`);
    this.fromAuth.delete(`${orgId}/${name}`);
    const org = this.orgs.get(orgId) ?? { id: orgId, name: orgId, createdAt: 0 };
    const steps = parseDockerfile(def.dockerfile);
    const from = steps[0] as Extract<DockerfileStep, { op: "FROM" }>;

    const context = path.join(work, "context");
    await mkdir(context, { recursive: true });
    if (def.hasContext) {
      b.progressTo({ phase: "context", percent: 2, message: "unpacking the build context" });
      await runCommand(
        [
          "tar",
          "-x",
          "-f",
          path.join(definitionDir, "context.tar"),
          "-C",
          context,
          "--no-same-owner",
          "--no-same-permissions",
        ],
        { timeoutMs: 10 * 60 * 1000 },
      ).catch((e) => {
        throw new ApiError("validation_failed", "Invalid request: context: not a tar or tar.gz archive", {
          fields: [
            {
              field: "context",
              rule: "archive",
              message: e instanceof CommandFailedError ? e.stderr.trim() : String(e),
            },
          ],
        });
      });
    }

    const isTemplate = await this.templates
      .get(orgId, from.ref)
      .then((t) => t.status === "ready" || t.kind === "builtin")
      .catch(() => false);
    b.progressTo({
      phase: "starting",
      percent: 5,
      message: `build sandbox from ${isTemplate ? "template" : "image"} ${from.ref}`,
    });
    const params = createSandboxRequestSchema.parse({
      ...(isTemplate ? { template: from.ref } : { image: { uri: from.ref, ...(fromAuth ? { auth: fromAuth } : {}) } }),
      resources: def.resources,
      timeoutMs: 3 * 3600 * 1000,
      entrypoint: [],
      user: "root",
      cwd: "/",
      metadata: { "sandpit.template-build": name },
      warmPool: { mode: "bypass" },
    });
    const { rootfs: parent } = await this.origins.rootfsFor(org, params);
    const sandbox = await this.sandboxes.create(org, params);
    try {
      const state: BuildState = {
        env: { ...parent.config.env },
        workdir: parent.config.workingDir ?? "/",
        user: parent.config.user,
        entrypoint: parent.config.entrypoint,
        cmd: parent.config.cmd,
      };
      const { agent } = await this.sandboxes.requireRunning(org, sandbox.id);
      const total = steps.length;
      for (const [i, step] of steps.entries()) {
        if (step.op === "FROM") continue;
        const percent = 10 + Math.round((80 * i) / total);
        b.progressTo({ phase: "step", percent, message: `step ${i}/${total - 1}: ${describeStep(step)}` });
        await this.runStep(org, sandbox, agent, step, state, context, b);
      }
      b.progressTo({ phase: "capturing", percent: 92, message: "saving the layer" });
      await this.exec.run(org, sandbox.id, { args: ["sync"], user: "root", background: false }).catch(() => undefined);
      const layerDir = path.join(work, "layer");
      await this.runtime.captureLayer(sandbox.id, layerDir);
      const config: RootfsConfig = {
        env: state.env,
        workingDir: state.workdir,
        user: state.user,
        entrypoint: state.entrypoint,
        cmd: state.cmd,
      };
      const result: CustomBuildResult & { from: string; description: string } = {
        layerDir,
        parentLayers: parent.layers,
        config,
        from: from.ref,
        description: def.description,
      };
      return result;
    } finally {
      await this.sandboxes
        .destroy(org, sandbox.id)
        .catch((e) => this.log.error({ err: e }, "build sandbox destroy failed"));
    }
  }

  private async runStep(
    org: OrgRecord,
    sandbox: SandboxRecord,
    agent: AgentClient,
    step: DockerfileStep,
    state: BuildState,
    context: string,
    b: TemplateBuild,
  ): Promise<void> {
    const fail = (message: string) =>
      new ApiError("validation_failed", `Dockerfile line ${step.line}: ${message}`, {
        fields: [{ field: "dockerfile", rule: "step_failed", message: `line ${step.line}: ${message}` }],
      });
    switch (step.op) {
      case "RUN": {
        const params = {
          ...(step.args ? { args: step.args } : { command: step.shell! }),
          env: state.env,
          cwd: state.workdir,
          user: state.user ?? "root",
          background: false,
        };
        let exitCode: number | null = null;
        let pending = "";
        for await (const e of this.exec.stream(org, sandbox.id, params)) {
          if (e.type === "stdout" || e.type === "stderr") {
            pending += e.data;
            const lines = pending.split("\n");
            pending = lines.pop() ?? "";
            for (const line of lines) b.log(line);
          } else if (e.type === "exit") exitCode = e.exitCode;
          else if (e.type === "error") throw fail(`RUN could not start: ${e.message}`);
        }
        if (pending) b.log(pending);
        if (exitCode !== 0) throw fail(`RUN ${step.shell ?? JSON.stringify(step.args)} exited with ${exitCode}`);
        return;
      }
      case "COPY":
        await this.copy(org, sandbox, agent, step, state, context, b, fail);
        return;
      case "ENV":
        for (const [k, v] of Object.entries(step.vars)) state.env[k] = expandVars(v, state.env);
        return;
      case "WORKDIR": {
        state.workdir = path.posix.resolve(state.workdir, expandVars(step.path, state.env));
        await agent.mkdir(state.workdir, { parents: true });
        return;
      }
      case "USER":
        state.user = expandVars(step.user, state.env).split(":")[0] ?? null;
        return;
      case "ENTRYPOINT":
        state.entrypoint = step.args;
        return;
      case "CMD":
        state.cmd = step.args;
        return;
      case "FROM":
        return;
    }
  }

  private async copy(
    org: OrgRecord,
    sandbox: SandboxRecord,
    agent: AgentClient,
    step: Extract<DockerfileStep, { op: "COPY" }>,
    state: BuildState,
    context: string,
    b: TemplateBuild,
    fail: (message: string) => ApiError,
  ): Promise<void> {
    const contextRoot = await realpath(context);
    const sources: string[] = [];
    for (const raw of step.sources) {
      const rel = path.posix.normalize(expandVars(raw, state.env)).replace(/^\/+/, "");
      const dir = path.posix.dirname(rel);
      const base = path.posix.basename(rel);
      const candidates = /[*?]/.test(base)
        ? (await readdir(path.join(contextRoot, dir)).catch(() => [] as string[]))
            .filter((n) => globToRegExp(base).test(n))
            .map((n) => path.join(contextRoot, dir, n))
        : [path.join(contextRoot, rel)];
      if (candidates.length === 0) throw fail(`COPY ${raw}: nothing in the context matches`);
      for (const c of candidates) {
        // A source (or a symlink on its way) must not lead out of the uploaded context.
        const real = await realpath(c).catch(() => undefined);
        if (!real) throw fail(`COPY ${raw}: not in the build context`);
        if (real !== contextRoot && !real.startsWith(`${contextRoot}/`))
          throw fail(`COPY ${raw}: leaves the build context`);
        sources.push(real);
      }
    }
    const destRaw = expandVars(step.dest, state.env);
    const dest = path.posix.resolve(state.workdir, destRaw);
    const destIsDir =
      destRaw.endsWith("/") ||
      sources.length > 1 ||
      (await agent
        .stat(dest)
        .then((s) => s.type === "dir")
        .catch(() => false));
    let files = 0;
    for (const src of sources) {
      const info = await lstat(src);
      if (info.isDirectory()) files += await this.copyTree(agent, src, dest, contextRoot);
      else {
        await agent.writeFile(destIsDir ? path.posix.join(dest, path.basename(src)) : dest, createReadStream(src), {
          mode: info.mode & 0o7777,
          mkdirs: true,
          size: info.size,
        });
        files++;
      }
    }
    if (step.chown) {
      const r = await this.exec.run(org, sandbox.id, {
        args: ["chown", "-R", step.chown, dest],
        user: "root",
        background: false,
      });
      if (r.exitCode !== 0) throw fail(`COPY --chown=${step.chown}: ${r.stderr.trim()}`);
    }
    b.log(`copied ${files} file(s) to ${dest}`);
  }

  /** Copies a context directory's files into the sandbox; symlinks inside it are copied as what they point to if they stay in the context. */
  private async copyTree(agent: AgentClient, src: string, dest: string, contextRoot: string): Promise<number> {
    await agent.mkdir(dest, { parents: true }).catch((e) => {
      if (!(e instanceof AgentError && e.code === "exists")) throw e;
    });
    let files = 0;
    for (const entry of await readdir(src, { withFileTypes: true })) {
      const from = path.join(src, entry.name);
      const to = path.posix.join(dest, entry.name);
      const real = await realpath(from).catch(() => undefined);
      if (!real || (real !== contextRoot && !real.startsWith(`${contextRoot}/`))) continue;
      const info = await lstat(real);
      if (info.isDirectory()) files += await this.copyTree(agent, real, to, contextRoot);
      else if (info.isFile()) {
        await agent.writeFile(to, createReadStream(real), { mode: info.mode & 0o7777, mkdirs: true, size: info.size });
        files++;
      }
    }
    return files;
  }
}

function describeStep(step: DockerfileStep): string {
  switch (step.op) {
    case "RUN":
      return `RUN ${step.shell ?? JSON.stringify(step.args)}`;
    case "COPY":
      return `COPY ${step.sources.join(" ")} ${step.dest}`;
    case "ENV":
      return `ENV ${Object.keys(step.vars).join(" ")}`;
    case "WORKDIR":
      return `WORKDIR ${step.path}`;
    case "USER":
      return `USER ${step.user}`;
    case "ENTRYPOINT":
    case "CMD":
      return `${step.op} ${JSON.stringify(step.args)}`;
    case "FROM":
      return `FROM ${step.ref}`;
  }
}
