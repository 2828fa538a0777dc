import { SandpitError, Templates } from "sandpit";
import { flagOption, UsageError } from "../args.js";
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
  usage: "NAME",
  summary: "Build a template, showing progress on stderr",
  options: {},
  async run({ positionals }, ctx) {
    const [name, extra] = positionals;
    if (name === undefined) throw new UsageError("templates build: missing template NAME");
    if (extra !== undefined) throw new UsageError(`templates build: unexpected argument "${extra}"`);
    const reporter = new ProgressReporter(ctx.stderr);
    try {
      const template = await Templates.build(
        name,
        {
          onEvent: (event) => {
            if (event.type === "progress") reporter.progress(event.phase, event.percent, event.message);
            else if (event.type === "log") reporter.line(event.line);
          },
        },
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
