import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { SandpitError, type TemplateBuildEvent, Templates } from "sandpit";
import { flagOption, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanBytes, relativeTime, table, toJson } from "../format.js";
import { ProgressReporter } from "../progress.js";

export const templatesLsCommand: CliCommand = {
  name: "templates ls",
  usage: "[--json]",
  summary: "List templates",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`templates ls: unexpected argument "${positionals[0]}"`);
    const templates = await Templates.list(ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(templates));
      return 0;
    }
    const rows = [["NAME", "STATUS", "SIZE", "BUILT", "DESCRIPTION"]];
    for (const t of templates) {
      const status =
        t.status === "building" && t.progress?.percent != null
          ? `building ${Math.floor(t.progress.percent)}%`
          : t.status;
      rows.push([t.name, status, humanBytes(t.sizeBytes), relativeTime(t.builtAt), t.description]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

export const templatesBuildCommand: CliCommand = {
  name: "templates build",
  usage: "NAME [--file Dockerfile [--context DIR] [--description TEXT]]",
  summary: "Build a built-in template, or your own from a Dockerfile, showing progress and build logs on stderr",
  options: { file: { type: "string", short: "f" }, context: { type: "string" }, description: { type: "string" } },
  async run({ values, positionals }, ctx) {
    const [name, extra] = positionals;
    if (name === undefined) throw new UsageError("templates build: missing template NAME");
    if (extra !== undefined) throw new UsageError(`templates build: unexpected argument "${extra}"`);
    const file = stringOption(values, "file");
    const contextDir = stringOption(values, "context");
    if (file === undefined && contextDir !== undefined) throw new UsageError("templates build: --context needs --file");
    const reporter = new ProgressReporter(ctx.stderr);
    const callbacks = {
      onEvent: (event: TemplateBuildEvent) => {
        if (event.type === "progress") reporter.progress(event.phase, event.percent, event.message);
        else if (event.type === "log") reporter.line(event.line);
      },
    };
    try {
      const template =
        file === undefined
          ? await Templates.build(name, callbacks, ctx.connection)
          : await Templates.create(
              {
                name,
                dockerfile: readFileSync(file, "utf8"),
                description: stringOption(values, "description") ?? "",
                ...(contextDir !== undefined ? { context: contextArchive(contextDir) } : {}),
              },
              callbacks,
              ctx.connection,
            );
      reporter.clear();
      ctx.stdout.write(`${template.name} ${template.status} (${humanBytes(template.sizeBytes)})\n`);
      return 0;
    } catch (err) {
      reporter.clear();
      if (err instanceof SandpitError && err.code === "build_failed") {
        throw new SandpitError(`building ${name} failed: ${err.message}`, { code: "build_failed" });
      }
      throw err;
    }
  },
};

export const templatesRmCommand: CliCommand = {
  name: "templates rm",
  usage: "NAME...",
  summary: "Delete templates of your own",
  options: {},
  async run({ positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("templates rm: missing template NAME");
    for (const name of positionals) await Templates.delete(name, ctx.connection);
    return 0;
  },
};

/** A directory as a gzipped tar archive (the build context a Dockerfile's COPY reads from). */
function contextArchive(dir: string): Uint8Array {
  return execFileSync("tar", ["-czf", "-", "-C", dir, "."], { maxBuffer: 64 * 1024 * 1024 });
}
