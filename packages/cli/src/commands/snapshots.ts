import { Sandbox, Snapshots } from "sandpit";
import { flagOption, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanBytes, relativeTime, table, toJson } from "../format.js";
import { singleId } from "./lifecycle.js";

export const snapshotCreateCommand: CliCommand = {
  name: "snapshot create",
  usage: "ID [--name NAME] [--json]",
  summary: "Snapshot a sandbox with its memory and processes (it keeps running); create --snapshot starts from it",
  options: { name: { type: "string" }, ...jsonOption },
  async run({ values, positionals }, ctx) {
    const sandbox = await Sandbox.get(singleId("snapshot create", positionals), ctx.connection);
    const name = stringOption(values, "name");
    if (ctx.stderr.isTTY === true) ctx.stderr.write(`snapshotting ${sandbox.id}…\n`);
    const snapshot = await sandbox.snapshot(name === undefined ? {} : { name });
    ctx.stdout.write(flagOption(values, "json") ? toJson(snapshot) : `${snapshot.id}\n`);
    return 0;
  },
};

export const snapshotLsCommand: CliCommand = {
  name: "snapshot ls",
  usage: "[--json]",
  summary: "List your organisation's snapshots",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`snapshot ls: unexpected argument "${positionals[0]}"`);
    const snapshots = await Snapshots.list(ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(snapshots));
      return 0;
    }
    const rows = [["ID", "NAME", "STATUS", "SOURCE", "SIZE", "CREATED"]];
    for (const s of snapshots) {
      rows.push([s.id, s.name ?? "-", s.status, s.sourceSandboxId, humanBytes(s.sizeBytes), relativeTime(s.createdAt)]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

export const snapshotRmCommand: CliCommand = {
  name: "snapshot rm",
  usage: "SNAPSHOT_ID [--json]",
  summary: "Delete a snapshot (sandboxes started from it keep running)",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    const id = singleId("snapshot rm", positionals, "SNAPSHOT_ID");
    await Snapshots.delete(id, ctx.connection);
    ctx.stdout.write(flagOption(values, "json") ? toJson({ id, deleted: true }) : `${id}\n`);
    return 0;
  },
};
