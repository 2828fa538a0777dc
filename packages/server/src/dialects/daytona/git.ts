import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { ExecService } from "../../services/exec-service.js";
import type { DialectContext } from "../dialect.js";
import { resolvePath } from "../opensandbox/execd-session.js";

type WithSandbox = FastifyRequest<{ Params: { sandboxId: string } }>;

/** What the git routes need from the toolbox: its sandbox look-up and its parser. */
export interface GitRouteDeps {
  open(request: WithSandbox): Promise<{ org: OrgRecord; record: SandboxRecord }>;
  parse: DialectContext["parse"];
  exec: ExecService;
  routeOptions: object;
}

/** A git run takes at most this long (clones of big repositories included). */
const GIT_TIMEOUT_MS = 10 * 60_000;

const pathField = z.string().min(1).max(4096);
const gitArg = z
  .string()
  .min(1)
  .max(4096)
  .refine((s) => !s.startsWith("-"), "must not start with '-'");
const credentials = { username: z.string().max(1024).optional(), password: z.string().max(4096).optional() };
const scopeField = z.enum(["global", "local", "system"]).default("global");

const cloneSchema = z.object({
  url: gitArg,
  path: pathField,
  branch: gitArg.optional(),
  commit_id: gitArg.optional(),
  depth: z.number().int().min(1).optional(),
  insecure_skip_tls: z.boolean().optional(),
  ...credentials,
});
const pathQuery = z.object({ path: pathField });
const addSchema = z.object({ path: pathField, files: z.array(z.string().min(1).max(4096)).min(1) });
const commitSchema = z.object({
  path: pathField,
  message: z
    .string()
    .min(1)
    .max(1024 * 1024),
  author: z.string().min(1).max(1024),
  email: z.string().min(1).max(1024),
  allow_empty: z.boolean().optional(),
});
const branchSchema = z.object({ path: pathField, name: gitArg });
const checkoutSchema = z.object({ path: pathField, branch: gitArg });
const syncSchema = z.object({
  path: pathField,
  branch: gitArg.optional(),
  remote: gitArg.optional(),
  set_upstream: z.boolean().optional(),
  ...credentials,
});
const initSchema = z.object({ path: pathField, bare: z.boolean().optional(), initial_branch: gitArg.optional() });
const resetSchema = z.object({
  path: pathField,
  mode: z.enum(["soft", "mixed", "hard", "merge", "keep"]).optional(),
  target: gitArg.optional(),
  files: z.array(z.string().min(1).max(4096)).optional(),
});
const restoreSchema = z.object({
  path: pathField,
  files: z.array(z.string().min(1).max(4096)).min(1),
  source: gitArg.optional(),
  staged: z.boolean().optional(),
  worktree: z.boolean().optional(),
});
const addRemoteSchema = z.object({
  path: pathField,
  name: gitArg,
  url: gitArg,
  fetch: z.boolean().optional(),
  overwrite: z.boolean().optional(),
});
const configKey = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9-]+$/, "must be a git config key like user.name");
const getConfigQuery = z.object({ key: configKey, path: pathField.optional(), scope: scopeField });
const setConfigSchema = z.object({
  key: configKey,
  value: z.string().max(64 * 1024),
  path: pathField.optional(),
  scope: scopeField,
});
const configureUserSchema = z.object({
  name: z.string().min(1).max(1024),
  email: z.string().min(1).max(1024),
  path: pathField.optional(),
  scope: scopeField,
});

/** Daytona's file status letters, from `git status --porcelain=v2`'s X and Y. */
const STATUS_OF: Record<string, string> = {
  ".": "Unmodified",
  M: "Modified",
  T: "Modified",
  A: "Added",
  D: "Deleted",
  R: "Renamed",
  C: "Copied",
  U: "Updated but unmerged",
  "?": "Untracked",
};

/**
 * The daemon's error code for what git said, in the order tried (the SDK raises DaytonaGitBranchNotFoundError
 * and the like from them); undefined for other failures.
 */
const GIT_ERROR_CODES: [RegExp, string][] = [
  [
    /Authentication failed|could not read (Username|Password)|terminal prompts disabled|HTTP Basic: Access denied/i,
    "GIT_AUTH_FAILED",
  ],
  [
    /repository '.*' not found|does not appear to be a git repository|Repository not found|not a git repository/i,
    "GIT_REPO_NOT_FOUND",
  ],
  [/\[remote rejected\]|pre-receive hook declined/, "GIT_REMOTE_REJECTED"],
  [/\[rejected\]|non-fast-forward/, "GIT_PUSH_REJECTED"],
  [/would be overwritten|Please commit your changes or stash them/, "GIT_DIRTY_WORKTREE"],
  [/^CONFLICT|Automatic merge failed/m, "GIT_MERGE_CONFLICT"],
  [/a branch named '.*' already exists/, "GIT_BRANCH_EXISTS"],
  [
    /pathspec '.*' did not match|invalid reference|branch '.*' not found|Remote branch .* not found|couldn't find remote ref|invalid upstream/i,
    "GIT_BRANCH_NOT_FOUND",
  ],
  [
    /Could not resolve host|Failed to connect|Connection refused|Connection timed out|unable to access|SSL certificate problem/i,
    "GIT_TRANSPORT_FAILED",
  ],
];

export function gitErrorCode(message: string): string | undefined {
  return GIT_ERROR_CODES.find(([pattern]) => pattern.test(message))?.[1];
}

export interface DaytonaGitStatus {
  currentBranch: string;
  detached: boolean;
  upstream?: string;
  branchPublished: boolean;
  ahead: number;
  behind: number;
  fileStatus: { name: string; staging: string; worktree: string; extra: string }[];
}

/** Daytona's `GitStatus` from `git status --porcelain=v2 --branch -z`. */
export function parseGitStatus(output: string): DaytonaGitStatus {
  const status: DaytonaGitStatus = {
    currentBranch: "",
    detached: false,
    branchPublished: false,
    ahead: 0,
    behind: 0,
    fileStatus: [],
  };
  const entries = output.split("\0");
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (entry.startsWith("# branch.head ")) {
      const head = entry.slice("# branch.head ".length);
      status.detached = head === "(detached)";
      status.currentBranch = status.detached ? "HEAD" : head;
    } else if (entry.startsWith("# branch.upstream ")) {
      status.upstream = entry.slice("# branch.upstream ".length);
      status.branchPublished = true;
    } else if (entry.startsWith("# branch.ab ")) {
      const m = /^# branch\.ab \+(\d+) -(\d+)$/.exec(entry);
      if (m) [status.ahead, status.behind] = [Number(m[1]), Number(m[2])];
    } else if (entry.startsWith("? ")) {
      status.fileStatus.push({ name: entry.slice(2), staging: "Untracked", worktree: "Untracked", extra: "" });
    } else if (/^[12u] /.test(entry)) {
      const fields = entry.split(" ");
      // Fields before the path: 1 → 8, 2 (rename/copy, with a score) → 9, u (unmerged) → 10.
      const before = entry[0] === "1" ? 8 : entry[0] === "2" ? 9 : 10;
      const xy = fields[1] ?? "..";
      const name = fields.slice(before).join(" ");
      // A rename's or copy's original path is the next NUL-separated entry.
      const extra = entry[0] === "2" ? (entries[++i] ?? "") : "";
      status.fileStatus.push({
        name,
        staging: STATUS_OF[xy[0] ?? "."] ?? "Modified",
        worktree: STATUS_OF[xy[1] ?? "."] ?? "Modified",
        extra,
      });
    }
  }
  return status;
}

/**
 * Daytona's git toolbox (`/git/*` of the in-sandbox daemon) on the sandbox's own git: each call runs git
 * in the sandbox as its user, so repositories, credentials stores and configs are the sandbox's, as with
 * Daytona's daemon. Paths are taken from the sandbox's working directory. Credentials given with a call
 * reach git through a credential helper reading the call's environment: they are neither stored nor in
 * any process's arguments. A git that fails answers 400 with its message.
 */
export function registerGitRoutes(app: FastifyInstance, { open, parse, exec, routeOptions }: GitRouteDeps) {
  const git = async (
    request: WithSandbox,
    args: string[],
    opts: { repo?: string; username?: string; password?: string } = {},
  ) => {
    const { org, record } = await open(request);
    const env: Record<string, string> = { GIT_TERMINAL_PROMPT: "0" };
    const prefix: string[] = [];
    if (opts.username !== undefined || opts.password !== undefined) {
      env.SANDPIT_GIT_USERNAME = opts.username ?? "";
      env.SANDPIT_GIT_PASSWORD = opts.password ?? "";
      prefix.push(
        "-c",
        "credential.helper=",
        "-c",
        'credential.helper=!f() { test "$1" = get || exit 0; echo "username=$SANDPIT_GIT_USERNAME"; echo "password=$SANDPIT_GIT_PASSWORD"; }; f',
      );
    }
    const repo = opts.repo !== undefined ? ["-C", resolvePath(record, opts.repo)] : [];
    const r = await exec.run(org, record.id, {
      args: ["git", ...repo, ...prefix, ...args],
      cwd: record.cwd,
      env,
      timeoutMs: GIT_TIMEOUT_MS,
    });
    if (r.exitCode !== 0) {
      const message = (r.stderr.trim() || r.stdout.trim() || `git exited with ${r.exitCode}`).slice(0, 4096);
      if (r.exitCode === 127 && /not found/.test(message)) {
        throw new ApiError("not_implemented", "git is not installed in this sandbox's template");
      }
      const daytonaCode = gitErrorCode(message);
      throw new ApiError(
        "bad_request",
        `git ${args.find((a) => !a.startsWith("-") && !a.includes("="))} failed: ${message}`,
        daytonaCode ? { daytonaCode } : undefined,
      );
    }
    return r.stdout;
  };
  const body = <T extends z.ZodType>(schema: T, request: WithSandbox) => parse(schema, request.body ?? {});
  const query = <T extends z.ZodType>(schema: T, request: WithSandbox) => parse(schema, request.query, "query");

  app.post("/:sandboxId/git/clone", routeOptions, async (request: WithSandbox) => {
    const b = body(cloneSchema, request);
    const { record } = await open(request);
    const target = resolvePath(record, b.path);
    await git(
      request,
      [
        ...(b.insecure_skip_tls ? ["-c", "http.sslVerify=false"] : []),
        "clone",
        ...(b.branch ? ["--branch", b.branch] : []),
        ...(b.depth ? ["--depth", String(b.depth)] : []),
        "--",
        b.url,
        target,
      ],
      credentialsOf(b),
    );
    // A commit leaves the clone on it, detached, as Daytona's daemon does.
    if (b.commit_id) await git(request, ["checkout", "--detach", b.commit_id], { repo: target });
    return {};
  });

  app.post("/:sandboxId/git/init", routeOptions, async (request: WithSandbox) => {
    const b = body(initSchema, request);
    const { record } = await open(request);
    await git(request, [
      "init",
      ...(b.bare ? ["--bare"] : []),
      ...(b.initial_branch ? ["--initial-branch", b.initial_branch] : []),
      "--",
      resolvePath(record, b.path),
    ]);
    return {};
  });

  app.get("/:sandboxId/git/status", routeOptions, async (request: WithSandbox) => {
    const { path } = query(pathQuery, request);
    return parseGitStatus(await git(request, ["status", "--porcelain=v2", "--branch", "-z"], { repo: path }));
  });

  app.post("/:sandboxId/git/add", routeOptions, async (request: WithSandbox) => {
    const b = body(addSchema, request);
    await git(request, ["add", "--", ...b.files], { repo: b.path });
    return {};
  });

  app.post("/:sandboxId/git/commit", routeOptions, async (request: WithSandbox) => {
    const b = body(commitSchema, request);
    await git(
      request,
      [
        "-c",
        `user.name=${b.author}`,
        "-c",
        `user.email=${b.email}`,
        "commit",
        "-m",
        b.message,
        ...(b.allow_empty ? ["--allow-empty"] : []),
      ],
      { repo: b.path },
    );
    return { hash: (await git(request, ["rev-parse", "HEAD"], { repo: b.path })).trim() };
  });

  app.get("/:sandboxId/git/branches", routeOptions, async (request: WithSandbox) => {
    const { path } = query(pathQuery, request);
    const out = await git(request, ["for-each-ref", "--format=%(HEAD)%(refname:short)", "refs/heads"], {
      repo: path,
    });
    const lines = out.split("\n").filter(Boolean);
    const current = lines.find((l) => l.startsWith("*"))?.slice(1);
    return { branches: lines.map((l) => l.slice(1)), ...(current ? { current } : {}) };
  });

  // Daytona's daemon creates a branch and switches to it.
  app.post("/:sandboxId/git/branches", routeOptions, async (request: WithSandbox) => {
    const b = body(branchSchema, request);
    await git(request, ["switch", "--create", b.name], { repo: b.path });
    return {};
  });

  app.delete("/:sandboxId/git/branches", routeOptions, async (request: WithSandbox) => {
    const b = body(branchSchema, request);
    await git(request, ["branch", "--delete", "--", b.name], { repo: b.path });
    return {};
  });

  app.post("/:sandboxId/git/checkout", routeOptions, async (request: WithSandbox) => {
    const b = body(checkoutSchema, request);
    await git(request, ["checkout", b.branch, "--"], { repo: b.path });
    return {};
  });

  app.post("/:sandboxId/git/pull", routeOptions, async (request: WithSandbox) => {
    const b = body(syncSchema, request);
    const target = b.remote || b.branch ? [b.remote ?? "origin", ...(b.branch ? [b.branch] : [])] : [];
    await git(request, ["pull", "--no-rebase", "--no-edit", ...target], { repo: b.path, ...credentialsOf(b) });
    return {};
  });

  app.post("/:sandboxId/git/push", routeOptions, async (request: WithSandbox) => {
    const b = body(syncSchema, request);
    const remote = b.remote ?? (b.branch || b.set_upstream ? "origin" : undefined);
    const branch = b.branch ?? (b.set_upstream ? "HEAD" : undefined);
    await git(
      request,
      ["push", ...(b.set_upstream ? ["--set-upstream"] : []), ...(remote ? [remote] : []), ...(branch ? [branch] : [])],
      { repo: b.path, ...credentialsOf(b) },
    );
    return {};
  });

  app.post("/:sandboxId/git/reset", routeOptions, async (request: WithSandbox) => {
    const b = body(resetSchema, request);
    if (b.files?.length) {
      if (b.mode) throw new ApiError("bad_request", "mode cannot be given with files", { field: "mode" });
      await git(request, ["reset", ...(b.target ? [b.target] : []), "--", ...b.files], { repo: b.path });
    } else {
      await git(request, ["reset", `--${b.mode ?? "mixed"}`, ...(b.target ? [b.target] : []), "--"], {
        repo: b.path,
      });
    }
    return {};
  });

  app.post("/:sandboxId/git/restore", routeOptions, async (request: WithSandbox) => {
    const b = body(restoreSchema, request);
    const where = [...(b.staged ? ["--staged"] : []), ...(b.worktree || !b.staged ? ["--worktree"] : [])];
    await git(request, ["restore", ...where, ...(b.source ? [`--source=${b.source}`] : []), "--", ...b.files], {
      repo: b.path,
    });
    return {};
  });

  app.get("/:sandboxId/git/remotes", routeOptions, async (request: WithSandbox) => {
    const { path } = query(pathQuery, request);
    const names = (await git(request, ["remote"], { repo: path })).split("\n").filter(Boolean);
    const remotes = [];
    for (const name of names) {
      remotes.push({ name, url: (await git(request, ["remote", "get-url", name], { repo: path })).trim() });
    }
    return { remotes };
  });

  app.post("/:sandboxId/git/remotes", routeOptions, async (request: WithSandbox) => {
    const b = body(addRemoteSchema, request);
    const existing = (await git(request, ["remote"], { repo: b.path })).split("\n").includes(b.name);
    if (existing && !b.overwrite) {
      throw new ApiError("conflict", `remote ${b.name} already exists (overwrite: true replaces its URL)`);
    }
    await git(request, existing ? ["remote", "set-url", b.name, b.url] : ["remote", "add", b.name, b.url], {
      repo: b.path,
    });
    if (b.fetch) await git(request, ["fetch", b.name], { repo: b.path });
    return {};
  });

  app.get("/:sandboxId/git/config", routeOptions, async (request: WithSandbox) => {
    const q = query(getConfigQuery, request);
    const { org, record } = await open(request);
    // An unset key is exit status 1 with no output: an absent value, not an error.
    const r = await exec.run(org, record.id, {
      args: ["git", ...(q.path ? ["-C", resolvePath(record, q.path)] : []), "config", `--${q.scope}`, "--get", q.key],
      cwd: record.cwd,
      timeoutMs: GIT_TIMEOUT_MS,
    });
    if (r.exitCode === 1 && r.stderr.trim() === "") return {};
    if (r.exitCode !== 0) throw new ApiError("bad_request", `git config failed: ${r.stderr.trim()}`);
    return { value: r.stdout.replace(/\n$/, "") };
  });

  app.post("/:sandboxId/git/config", routeOptions, async (request: WithSandbox) => {
    const b = body(setConfigSchema, request);
    await git(request, ["config", `--${b.scope}`, b.key, b.value], b.path ? { repo: b.path } : {});
    return {};
  });

  app.post("/:sandboxId/git/config/user", routeOptions, async (request: WithSandbox) => {
    const b = body(configureUserSchema, request);
    const repo = b.path ? { repo: b.path } : {};
    await git(request, ["config", `--${b.scope}`, "user.name", b.name], repo);
    await git(request, ["config", `--${b.scope}`, "user.email", b.email], repo);
    return {};
  });
}

function credentialsOf(b: { username?: string | undefined; password?: string | undefined }) {
  return {
    ...(b.username !== undefined ? { username: b.username } : {}),
    ...(b.password !== undefined ? { password: b.password } : {}),
  };
}
