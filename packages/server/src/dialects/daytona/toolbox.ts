import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { limits } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import { receiveMultipart } from "../../http/upload-limit.js";
import type { AppServices } from "../../services/index.js";
import type { SandboxFiles } from "../../services/sandbox-files.js";
import { bearerToken, type DialectContext, type DialectServices, registerDialect } from "../dialect.js";
import { resolvePath } from "../opensandbox/execd-session.js";
import { acceptEmptyForms, daytonaErrorReply } from "./errors.js";
import { registerGitRoutes } from "./git.js";
import { registerInterpreterRoutes, registerInterpreterSocket } from "./interpreter.js";
import { DAYTONA_TOOLBOX_PREFIX, fileInfoOf, splitCommand } from "./mapping.js";
import {
  bulkDownloadSchema,
  codeRunSchema,
  createFolderQuerySchema,
  createSessionSchema,
  deleteFileQuerySchema,
  executeSchema,
  listFilesQuerySchema,
  moveQuerySchema,
  pathQuerySchema,
  sessionExecuteSchema,
} from "./schemas.js";
import { commandOf, DaytonaSessions } from "./sessions.js";

type WithSandbox<T = object> = FastifyRequest<{ Params: { sandboxId: string } & T }>;
type WithSession = WithSandbox<{ sessionId: string }>;
type WithCommand = WithSandbox<{ sessionId: string; commandId: string }>;

/** What Daytona's toolbox uses. */
export type DaytonaToolboxServices = DialectServices &
  Pick<AppServices, "sandboxes" | "exec" | "files" | "code" | "maxUploadBytes">;

/** How `codeRun` runs a program in each language of Daytona's code toolbox: a fresh process per run. */
const CODE_RUNNERS: Record<string, (code: string) => string[]> = {
  python: (code) => ["python3", "-c", code],
  javascript: (code) => ["node", "-e", code],
};

/**
 * Daytona's toolbox (the in-sandbox daemon's API) for every Sandpit sandbox under
 * `/daytona/toolbox/<sandboxId>` — the `toolboxProxyUrl` the API hands out: commands, code runs, files, git,
 * sessions (bash code contexts) and the code interpreter (python contexts). Callers send a Sandpit API key of
 * the sandbox's organisation as the SDK's bearer token. Errors are the daemon's, with its codes (FILE_NOT_FOUND, …).
 */
export function daytonaToolboxDialect(app: FastifyInstance, services: DaytonaToolboxServices) {
  registerInterpreterSocket(app, services);
  registerDialect(
    app,
    services,
    {
      name: "daytona-toolbox",
      prefix: DAYTONA_TOOLBOX_PREFIX,
      apiKey: bearerToken,
      errorReply: (error, request) => daytonaErrorReply(error, request, "DAYTONA_DAEMON"),
    },
    routes,
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<DaytonaToolboxServices>) {
  const { sandboxes, exec, files } = services;
  const sessions = new DaytonaSessions(services);
  const one = forSandbox("sandboxId");

  // Uploads are streamed to the sandbox as they arrive: the body is read by the route, not parsed.
  app.addContentTypeParser("multipart/form-data", (_request, _payload, done) => done(null));
  acceptEmptyForms(app);

  const open = async (request: WithSandbox): Promise<{ org: OrgRecord; record: SandboxRecord }> => {
    const org = await authenticate(request);
    const record = await sandboxes.get(org, request.params.sandboxId);
    if (record.status === "destroyed") {
      sessions.forget(record.id);
      throw new ApiError("sandbox_not_found", `sandbox ${record.id} not found`);
    }
    return { org, record };
  };
  /** The sandbox's files, relative paths taken from its working directory as Daytona's daemon takes them. */
  const filesOf = async (
    request: WithSandbox,
  ): Promise<{ org: OrgRecord; record: SandboxRecord; fs: SandboxFiles }> => {
    const { org, record } = await open(request);
    return { org, record, fs: await files.open(org, record.id, (p) => resolvePath(record, p)) };
  };

  /** A command to its end; stdout and stderr together in arrival order, as the daemon's `result`. */
  const runCombined = async (
    org: OrgRecord,
    record: SandboxRecord,
    args: string[],
    opts: { cwd?: string; env?: Record<string, string>; timeoutS?: number },
  ) => {
    let output = "";
    let exit: { exitCode: number; timedOut: boolean } | undefined;
    const timeoutMs = opts.timeoutS ? opts.timeoutS * 1000 : limits.execTimeoutMs.max;
    for await (const e of exec.stream(org, record.id, {
      args,
      ...(opts.cwd !== undefined ? { cwd: resolvePath(record, opts.cwd) } : {}),
      ...(opts.env ? { env: opts.env } : {}),
      timeoutMs: Math.min(timeoutMs, limits.execTimeoutMs.max),
    })) {
      if (e.type === "stdout" || e.type === "stderr") output += e.data;
      else if (e.type === "error") output += `${e.message}\n`;
      else if (e.type === "exit") exit = { exitCode: e.exitCode, timedOut: e.timedOut };
    }
    if (!exit) throw new ApiError("internal", "the command ended without an exit status");
    if (exit.timedOut) {
      throw new ApiError(
        "request_timeout",
        `Command execution timed out after ${opts.timeoutS} seconds. The timeout can be increased by adjusting the timeout parameter in the request.`,
      );
    }
    return { exitCode: exit.exitCode, result: output };
  };

  // ---- process ----

  app.post("/:sandboxId/process/execute", one, async (request: WithSandbox) => {
    const body = parse(executeSchema, request.body ?? {});
    const args = splitCommand(body.command);
    if (args.length === 0) throw new ApiError("bad_request", "empty command", { field: "command" });
    const { org, record } = await open(request);
    return runCombined(org, record, args, {
      ...(body.cwd !== undefined ? { cwd: body.cwd } : {}),
      ...(body.envs ? { env: body.envs } : {}),
      ...(body.timeout ? { timeoutS: body.timeout } : {}),
    });
  });

  app.post("/:sandboxId/process/code-run", one, async (request: WithSandbox) => {
    const body = parse(codeRunSchema, request.body ?? {});
    const runner = CODE_RUNNERS[body.language];
    if (!runner) {
      throw new ApiError(
        "not_implemented",
        `language: ${body.language} is not supported by Sandpit's code runs (${Object.keys(CODE_RUNNERS).join(", ")})`,
        { field: "language" },
      );
    }
    const { org, record } = await open(request);
    const run = await runCombined(org, record, [...runner(body.code), ...(body.argv ?? [])], {
      ...(body.envs ? { env: body.envs } : {}),
      ...(body.timeout ? { timeoutS: body.timeout } : {}),
    });
    return { ...run, artifacts: { charts: [] } };
  });

  app.post("/:sandboxId/process/session", one, async (request: WithSandbox, reply) => {
    const { sessionId } = parse(createSessionSchema, request.body ?? {});
    const { org, record } = await open(request);
    await sessions.create(org, record, sessionId);
    return reply.code(201).send();
  });

  app.get("/:sandboxId/process/session", one, async (request: WithSandbox) => {
    const { record } = await open(request);
    return sessions.list(record.id);
  });

  app.get("/:sandboxId/process/session/:sessionId", one, async (request: WithSession) => {
    const { record } = await open(request);
    return sessions.get(record.id, request.params.sessionId);
  });

  app.delete("/:sandboxId/process/session/:sessionId", one, async (request: WithSession, reply) => {
    const { org, record } = await open(request);
    await sessions.delete(org, record.id, request.params.sessionId);
    return reply.code(204).send();
  });

  app.post("/:sandboxId/process/session/:sessionId/exec", one, async (request: WithSession, reply) => {
    const body = parse(sessionExecuteSchema, request.body ?? {});
    const { org, record } = await open(request);
    const runAsync = body.runAsync ?? body.async ?? false;
    const entry = await sessions.execute(org, record.id, request.params.sessionId, body.command, !runAsync);
    if (runAsync) return reply.code(202).send({ cmdId: entry.id });
    return {
      cmdId: entry.id,
      output: entry.output,
      stdout: entry.stdout,
      stderr: entry.stderr,
      exitCode: entry.exitCode,
    };
  });

  app.get("/:sandboxId/process/session/:sessionId/command/:commandId", one, async (request: WithCommand) => {
    const { record } = await open(request);
    return commandOf(sessions.command(record.id, request.params.sessionId, request.params.commandId));
  });

  app.get("/:sandboxId/process/session/:sessionId/command/:commandId/logs", one, async (request: WithCommand) => {
    const { record } = await open(request);
    if ((request.query as Record<string, string>).follow === "true") {
      throw new ApiError(
        "not_implemented",
        "following a session command's logs (WebSocket) is not supported by Sandpit",
      );
    }
    const entry = sessions.command(record.id, request.params.sessionId, request.params.commandId);
    return { output: entry.output, stdout: entry.stdout, stderr: entry.stderr };
  });

  // ---- info ----

  app.get("/:sandboxId/work-dir", one, async (request: WithSandbox) => ({ dir: (await open(request)).record.cwd }));

  app.get("/:sandboxId/user-home-dir", one, async (request: WithSandbox) => {
    const { org, record } = await open(request);
    const r = await exec.run(org, record.id, { args: ["sh", "-c", 'printf %s "$HOME"'] });
    return { dir: r.stdout || "/root" };
  });

  app.get("/:sandboxId/version", one, async (request: WithSandbox) => {
    await open(request);
    return { version: "sandpit" };
  });

  // ---- files ----

  const infoOf = async (fs: SandboxFiles, entry: Awaited<ReturnType<SandboxFiles["stat"]>>) => {
    const { owner, group } = await fs.accounts.ownerNames(entry.uid, entry.gid);
    return fileInfoOf(entry, owner, group);
  };

  app.get("/:sandboxId/files", one, async (request: WithSandbox) => {
    const q = parse(listFilesQuerySchema, request.query, "query");
    const { fs } = await filesOf(request);
    const depth = q.depth ?? 1;
    const out: ReturnType<typeof fileInfoOf>[] = [];
    const walk = async (dir: string, level: number): Promise<void> => {
      for (const child of await fs.list(dir)) {
        out.push(await infoOf(fs, child));
        if (child.type === "dir" && level < depth) await walk(child.path, level + 1);
      }
    };
    await walk(q.path, 1);
    return out;
  });

  app.get("/:sandboxId/files/info", one, async (request: WithSandbox) => {
    const { path } = parse(pathQuerySchema, request.query, "query");
    const { fs } = await filesOf(request);
    return infoOf(fs, await fs.stat(path));
  });

  app.post("/:sandboxId/files/folder", one, async (request: WithSandbox, reply) => {
    const q = parse(createFolderQuerySchema, request.query, "query");
    const { fs } = await filesOf(request);
    await fs.mkdir(q.path, { parents: true, mode: Number.parseInt(q.mode ?? "755", 8) });
    return reply.code(201).send();
  });

  app.delete("/:sandboxId/files", one, async (request: WithSandbox, reply) => {
    const q = parse(deleteFileQuerySchema, request.query, "query");
    const { fs, record } = await filesOf(request);
    const entry = await fs.stat(q.path);
    if (resolvePath(record, q.path) === "/")
      throw new ApiError("bad_request", "refusing to delete /", { field: "path" });
    if (entry.type === "dir" && q.recursive !== "true") {
      throw new ApiError("bad_request", `${q.path} is a directory: delete it with recursive=true`, {
        field: "recursive",
      });
    }
    await fs.remove(q.path, { recursive: q.recursive === "true" });
    return reply.code(204).send();
  });

  app.post("/:sandboxId/files/move", one, async (request: WithSandbox, reply) => {
    const q = parse(moveQuerySchema, request.query, "query");
    const { fs } = await filesOf(request);
    await fs.move(q.source, q.destination);
    return reply.code(200).send();
  });

  app.get("/:sandboxId/files/download", one, async (request: WithSandbox, reply) => {
    const { path } = parse(pathQuerySchema, request.query, "query");
    const { fs } = await filesOf(request);
    const file = await fs.read(path);
    return reply.type("application/octet-stream").header("content-length", String(file.size)).send(file.body);
  });

  /**
   * Several files in one multipart answer, as the daemon sends them: a `file` part per file named by
   * the path asked for, or an `error` part (JSON with the daemon's code) for a path that cannot be read.
   */
  app.post("/:sandboxId/files/bulk-download", one, async (request: WithSandbox, reply) => {
    const { paths } = parse(bulkDownloadSchema, request.body ?? {});
    const { fs } = await filesOf(request);
    const boundary = randomBytes(16).toString("hex");
    const head = (name: string, filename: string, type: string, length?: number) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename.replace(/"/g, "%22")}"\r\n` +
      `Content-Type: ${type}\r\n${length !== undefined ? `Content-Length: ${length}\r\n` : ""}\r\n`;
    async function* parts(): AsyncGenerator<Buffer> {
      for (const p of paths) {
        let file: Awaited<ReturnType<SandboxFiles["read"]>> | undefined;
        let failure: ApiError | undefined;
        try {
          const entry = await fs.stat(p);
          if (entry.type === "dir") throw new ApiError("bad_request", `${p} is a directory`);
          file = await fs.read(p);
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          failure = e;
        }
        if (file) {
          yield Buffer.from(head("file", p, "application/octet-stream", file.size));
          for await (const chunk of file.body) yield chunk as Buffer;
        } else {
          const code = failure!.code === "file_not_found" ? "FILE_NOT_FOUND" : failure!.code.toUpperCase();
          const body = Buffer.from(
            JSON.stringify({ message: failure!.message, statusCode: failure!.status, code, source: "DAYTONA_DAEMON" }),
          );
          yield Buffer.from(head("error", p, "application/json", body.length));
          yield body;
        }
        yield Buffer.from("\r\n");
      }
      yield Buffer.from(`--${boundary}--\r\n`);
    }
    return reply.type(`multipart/form-data; boundary=${boundary}`).send(Readable.from(parts()));
  });

  /** `files[i].path` fields name where each `files[i].file` part goes; parents are created. */
  app.post("/:sandboxId/files/bulk-upload", one, async (request: WithSandbox, reply) => {
    const { fs } = await filesOf(request);
    const destinations = new Map<string, string>();
    let written = 0;
    await receiveMultipart(
      request.raw,
      services.maxUploadBytes,
      {
        field: (name, value) => {
          const m = /^files\[(\d+)\]\.path$/.exec(name);
          if (m) destinations.set(m[1]!, value);
        },
        file: (name, stream, info) => {
          const m = /^files\[(\d+)\]\.file$/.exec(name);
          if (!m) return undefined;
          const destination = destinations.get(m[1]!) ?? info.filename;
          if (!destination) {
            throw new ApiError("bad_request", `${name}: no files[${m[1]}].path before it`, {
              field: `files[${m[1]}].path`,
            });
          }
          written++;
          return fs.write(destination, stream, { mkdirs: true });
        },
      },
      { preservePath: true },
    );
    if (written === 0) throw new ApiError("bad_request", "no files[i].file part in the upload", { field: "files" });
    return reply.code(200).send();
  });

  registerGitRoutes(app, { open, parse, exec, routeOptions: one });
  registerInterpreterRoutes(app, services, { open, parse, routeOptions: one });

  /** Toolbox features Sandpit does not have answer "not supported" in the daemon's shape. */
  app.all("/:sandboxId/*", async (request: WithSandbox) => {
    await authenticate(request);
    const what = (request.url.split("?")[0] ?? "").split("/").slice(4).join("/");
    throw new ApiError("not_implemented", `${request.method} /${what} of the toolbox is not supported by Sandpit`);
  });
}
