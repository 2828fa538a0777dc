import { type ImagePullEvent, Images } from "sandpit";
import { flagOption, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanBytes, relativeTime, table, toJson } from "../format.js";
import { ProgressReporter } from "../progress.js";

export const imagesLsCommand: CliCommand = {
  name: "images ls",
  usage: "[--json]",
  summary: "List the images your organisation has pulled",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`images ls: unexpected argument "${positionals[0]}"`);
    const images = await Images.list(ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(images));
      return 0;
    }
    const rows = [["REFERENCE", "STATUS", "SIZE", "LAYERS", "PULLED", "DIGEST"]];
    for (const i of images) {
      const status =
        i.status === "pulling" && i.progress && i.progress.bytesTotal > 0
          ? `pulling ${Math.floor((100 * i.progress.bytesDone) / i.progress.bytesTotal)}%`
          : i.status;
      rows.push([
        i.uri,
        status,
        humanBytes(i.sizeBytes),
        String(i.layers ?? "-"),
        relativeTime(i.pulledAt),
        i.digest?.slice(0, 19) ?? "-",
      ]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

async function readStdin(stdin: NodeJS.ReadStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

export const imagesPullCommand: CliCommand = {
  name: "images pull",
  usage: "URI [--username USER --password-stdin]",
  summary: "Pull an image into the server's cache, showing layers and bytes as they arrive on stderr",
  options: { username: { type: "string", short: "u" }, "password-stdin": { type: "boolean" } },
  async run({ values, positionals }, ctx) {
    const [uri, extra] = positionals;
    if (uri === undefined) throw new UsageError("images pull: missing image URI");
    if (extra !== undefined) throw new UsageError(`images pull: unexpected argument "${extra}"`);
    const username = stringOption(values, "username");
    const passwordStdin = flagOption(values, "password-stdin");
    if ((username === undefined) !== !passwordStdin) {
      throw new UsageError("images pull: --username and --password-stdin go together");
    }
    // The password comes from stdin so that it never shows in the process list or shell history.
    const auth = username !== undefined ? { username, password: await readStdin(ctx.stdin) } : undefined;
    const reporter = new ProgressReporter(ctx.stderr);
    const onEvent = (e: ImagePullEvent) => {
      if (e.type !== "progress") return;
      const percent = e.bytesTotal > 0 ? (100 * e.bytesDone) / e.bytesTotal : e.phase === "done" ? 100 : null;
      reporter.progress(
        e.phase,
        percent,
        `${e.layersDone}/${e.layersTotal} layers, ${humanBytes(e.bytesDone)} of ${humanBytes(e.bytesTotal)}`,
      );
    };
    try {
      const image = await Images.pull({ uri, ...(auth ? { auth } : {}) }, { onEvent }, ctx.connection);
      reporter.clear();
      ctx.stdout.write(`${image.reference} ${image.status} ${image.digest ?? ""} (${humanBytes(image.sizeBytes)})\n`);
      return 0;
    } finally {
      reporter.clear();
    }
  },
};
