import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { text } from "node:stream/consumers";
import { type CodeExecution, type CodeLanguage, type CodeResult, Sandbox } from "sandpit";
import { flagOption, listOption, parseDuration, parseKeyValues, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanDuration, relativeTime, table, toJson } from "../format.js";
import { TIMED_OUT_EXIT_CODE } from "./exec.js";

const LANGUAGES: readonly CodeLanguage[] = ["python", "javascript", "bash"];

/** Image results saved as files, by MIME type: the file extension and how the bundle holds the bytes. */
const IMAGE_TYPES = [
  { mime: "image/png", ext: "png", encoding: "base64" },
  { mime: "image/jpeg", ext: "jpg", encoding: "base64" },
  { mime: "image/svg+xml", ext: "svg", encoding: "utf8" },
] as const;

/** Text forms of a result, in the order the terminal prefers them. */
const TEXT_TYPES = ["text/plain", "text/markdown", "text/latex", "application/json"] as const;

export const runCodeCommand: CliCommand = {
  name: "run-code",
  usage:
    "ID [-c CODE] [--language python|javascript|bash] [--context CTX] [--env K=V]... [--timeout DURATION] [--out DIR] [--json] < cell",
  summary:
    "Run a cell (from stdin or -c) in a live interpreter of a sandbox: prints its output and text results, saves images to --out; exits 1 if it raised",
  options: {
    code: { type: "string", short: "c" },
    language: { type: "string", short: "l" },
    context: { type: "string" },
    env: { type: "string", short: "e", multiple: true },
    timeout: { type: "string" },
    out: { type: "string", short: "o" },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("run-code: missing sandbox ID");
    if (extra !== undefined)
      throw new UsageError(`run-code: unexpected argument "${extra}" (the cell comes from stdin or -c)`);
    const language = languageOption(stringOption(values, "language"));
    const context = stringOption(values, "context");
    if (language !== undefined && context !== undefined) {
      throw new UsageError("run-code: give either --language or --context (a context has its language)");
    }
    const timeout = stringOption(values, "timeout");
    const code = stringOption(values, "code") ?? (await text(ctx.stdin));
    const json = flagOption(values, "json");
    const out = stringOption(values, "out");
    const outDir = path.resolve(out ?? ".");
    if (out !== undefined && !json) await mkdir(outDir, { recursive: true });
    const sandbox = await Sandbox.get(id, ctx.connection);
    let results = 0;
    // Results are handled as they arrive, so a figure is on disk while a long cell still runs.
    let pending = Promise.resolve();
    let showFailure: unknown;
    const execution = await sandbox.code.run(code, {
      ...(language !== undefined ? { language } : {}),
      ...(context !== undefined ? { context } : {}),
      env: parseKeyValues("--env", listOption(values, "env")),
      ...(timeout !== undefined ? { timeoutMs: parseDuration("--timeout", timeout) } : {}),
      ...(json
        ? {}
        : {
            onStdout: (data: string) => ctx.stdout.write(data),
            onStderr: (data: string) => ctx.stderr.write(data),
            onResult: (result: CodeResult) => {
              const index = results++;
              pending = pending
                .then(() => showResult(result, outDir, index, ctx.stdout))
                .catch((err: unknown) => {
                  showFailure ??= err;
                });
            },
          }),
    });
    await pending;
    if (showFailure !== undefined) throw showFailure;
    if (json) {
      ctx.stdout.write(toJson(execution));
      return exitStatus(execution);
    }
    if (execution.error !== null) {
      const { name, value, traceback } = execution.error;
      ctx.stderr.write(`${traceback.trim() !== "" ? traceback.trimEnd() : `${name}: ${value}`}\n`);
    }
    if (execution.status === "timeout") {
      ctx.stderr.write(`sandpit: the cell was interrupted after ${humanDuration(execution.durationMs)} (timeout)\n`);
    }
    return exitStatus(execution);
  },
};

export const contextsLsCommand: CliCommand = {
  name: "contexts ls",
  usage: "ID [--json]",
  summary: "List a sandbox's code contexts (live interpreters)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("contexts ls: missing sandbox ID");
    if (extra !== undefined) throw new UsageError(`contexts ls: unexpected argument "${extra}"`);
    const contexts = await (await Sandbox.get(id, ctx.connection)).code.listContexts();
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(contexts));
      return 0;
    }
    const rows = [["ID", "LANGUAGE", "CWD", "DEFAULT", "CREATED"]];
    for (const c of contexts)
      rows.push([c.id, c.language, c.cwd, c.isDefault ? "yes" : "no", relativeTime(c.createdAt)]);
    ctx.stdout.write(table(rows));
    return 0;
  },
};

export const contextsCreateCommand: CliCommand = {
  name: "contexts create",
  usage: "ID [--language python|javascript|bash] [--cwd PATH] [--env K=V]... [--json]",
  summary: "Start a code context (a new interpreter with its own variables) and print its id",
  options: {
    language: { type: "string", short: "l" },
    cwd: { type: "string" },
    env: { type: "string", short: "e", multiple: true },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    const [id, extra] = positionals;
    if (id === undefined) throw new UsageError("contexts create: missing sandbox ID");
    if (extra !== undefined) throw new UsageError(`contexts create: unexpected argument "${extra}"`);
    const language = languageOption(stringOption(values, "language"));
    const cwd = stringOption(values, "cwd");
    const env = listOption(values, "env");
    const sandbox = await Sandbox.get(id, ctx.connection);
    const context = await sandbox.code.createContext({
      ...(language !== undefined ? { language } : {}),
      ...(cwd !== undefined ? { cwd } : {}),
      ...(env.length > 0 ? { env: parseKeyValues("--env", env) } : {}),
    });
    ctx.stdout.write(flagOption(values, "json") ? toJson(context) : `${context.id}\n`);
    return 0;
  },
};

export const contextsRestartCommand: CliCommand = {
  name: "contexts restart",
  usage: "ID CTX",
  summary: "Restart a code context's interpreter: its variables are gone, its id, cwd and env stay",
  options: {},
  async run({ positionals }, ctx) {
    const [id, contextId, extra] = positionals;
    if (id === undefined || contextId === undefined) throw new UsageError("contexts restart: expects ID CTX");
    if (extra !== undefined) throw new UsageError(`contexts restart: unexpected argument "${extra}"`);
    await (await Sandbox.get(id, ctx.connection)).code.restartContext(contextId);
    return 0;
  },
};

export const contextsRmCommand: CliCommand = {
  name: "contexts rm",
  usage: "ID CTX...",
  summary: "Stop code contexts and forget them",
  options: {},
  async run({ positionals }, ctx) {
    const [id, ...contextIds] = positionals;
    if (id === undefined || contextIds.length === 0) throw new UsageError("contexts rm: expects ID CTX...");
    const sandbox = await Sandbox.get(id, ctx.connection);
    for (const contextId of contextIds) await sandbox.code.removeContext(contextId);
    return 0;
  },
};

function languageOption(value: string | undefined): CodeLanguage | undefined {
  if (value === undefined) return undefined;
  const language = LANGUAGES.find((l) => l === value);
  if (language === undefined) throw new UsageError(`--language must be one of ${LANGUAGES.join(", ")}, got "${value}"`);
  return language;
}

/** 0 for a cell that ran through, 124 for one interrupted by its timeout, 1 for one that raised. */
function exitStatus(execution: CodeExecution): number {
  if (execution.status === "timeout") return TIMED_OUT_EXIT_CODE;
  return execution.status === "ok" && execution.error === null ? 0 : 1;
}

/** Saves a result's images to files (printing their paths) or prints its text form. */
async function showResult(result: CodeResult, outDir: string, index: number, out: NodeJS.WritableStream) {
  let savedImage = false;
  for (const image of IMAGE_TYPES) {
    const content = result.data[image.mime];
    if (typeof content !== "string") continue;
    const file = await saveNew(outDir, `result-${index + 1}`, image.ext, Buffer.from(content, image.encoding));
    out.write(`${file}\n`);
    savedImage = true;
  }
  if (savedImage) return;
  for (const mime of TEXT_TYPES) {
    const content = result.data[mime];
    if (content === undefined) continue;
    const shown = typeof content === "string" ? content : JSON.stringify(content, null, 2);
    out.write(shown.endsWith("\n") ? shown : `${shown}\n`);
    return;
  }
}

/** Writes `data` to `<dir>/<stem>.<ext>`, or `<stem>-2.<ext>` and so on: never over an existing file. */
async function saveNew(dir: string, stem: string, ext: string, data: Buffer): Promise<string> {
  for (let n = 1; ; n++) {
    const file = path.join(dir, n === 1 ? `${stem}.${ext}` : `${stem}-${n}.${ext}`);
    const handle = await open(file, "wx").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "EEXIST") return undefined;
      throw err;
    });
    if (handle === undefined) continue;
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
    return file;
  }
}
