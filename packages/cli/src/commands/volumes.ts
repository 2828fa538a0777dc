import { type CreateSandboxRequest, Volumes } from "sandpit";
import { flagOption, parseSizeMb, stringOption, UsageError } from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { humanBytes, humanMb, relativeTime, table, toJson } from "../format.js";

export const volumesCreateCommand: CliCommand = {
  name: "volumes create",
  usage: "NAME [--size MB] [--json]",
  summary: "Create a named volume (default 1 GiB) that sandboxes mount with create --volume NAME:/path",
  options: { size: { type: "string" }, ...jsonOption },
  async run({ values, positionals }, ctx) {
    const [name, extra] = positionals;
    if (name === undefined) throw new UsageError("volumes create: missing volume NAME");
    if (extra !== undefined) throw new UsageError(`volumes create: unexpected argument "${extra}"`);
    const size = stringOption(values, "size");
    const volume = await Volumes.create(
      { name, ...(size !== undefined ? { sizeMb: parseSizeMb("--size", size) } : {}) },
      ctx.connection,
    );
    ctx.stdout.write(flagOption(values, "json") ? toJson(volume) : `${volume.name}\n`);
    return 0;
  },
};

export const volumesLsCommand: CliCommand = {
  name: "volumes ls",
  usage: "[--json]",
  summary: "List your organisation's volumes",
  options: { ...jsonOption },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`volumes ls: unexpected argument "${positionals[0]}"`);
    const volumes = await Volumes.list(ctx.connection);
    if (flagOption(values, "json")) {
      ctx.stdout.write(toJson(volumes));
      return 0;
    }
    const rows = [["NAME", "SIZE", "USED", "MOUNTED BY", "CREATED"]];
    for (const v of volumes) {
      rows.push([
        v.name,
        humanMb(v.sizeMb),
        humanBytes(v.usedBytes),
        v.mountedBy.length > 0 ? v.mountedBy.join(",") : "-",
        relativeTime(v.createdAt),
      ]);
    }
    ctx.stdout.write(table(rows));
    return 0;
  },
};

export const volumesRmCommand: CliCommand = {
  name: "volumes rm",
  usage: "NAME...",
  summary: "Delete volumes and their files (refused while a sandbox mounts one)",
  options: {},
  async run({ positionals }, ctx) {
    if (positionals.length === 0) throw new UsageError("volumes rm: missing volume NAME");
    for (const name of positionals) await Volumes.delete(name, ctx.connection);
    return 0;
  },
};

/**
 * `--volume NAME:/path[:ro]` (a named volume, optionally `NAME/sub/path:/path` for a subPath) or
 * `--volume /host/dir:/path[:ro]` (a host directory the server allows) as a create request's mounts.
 */
export function parseVolumeFlags(flags: string[]): NonNullable<CreateSandboxRequest["volumes"]> {
  return flags.map((flag) => {
    const parts = flag.split(":");
    const readOnly = parts.length === 3 && parts[2] === "ro";
    if (parts.length < 2 || parts.length > 3 || (parts.length === 3 && !readOnly) || !parts[0] || !parts[1]) {
      throw new UsageError(`--volume expects NAME:/path[:ro] or /host/dir:/path[:ro], got "${flag}"`);
    }
    const [source, mountPath] = parts as [string, string];
    if (source.startsWith("/")) return { hostPath: source, mountPath, readOnly };
    const slash = source.indexOf("/");
    if (slash < 0) return { name: source, mountPath, readOnly };
    return { name: source.slice(0, slash), subPath: source.slice(slash + 1), mountPath, readOnly };
  });
}
