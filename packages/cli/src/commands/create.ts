import { type CreateSandboxRequest, Sandbox } from "sandpit";
import {
  flagOption,
  listOption,
  parseDuration,
  parseInteger,
  parseKeyValues,
  parseSizeMb,
  stringOption,
  UsageError,
} from "../args.js";
import { type CliCommand, jsonOption } from "../command.js";
import { toJson } from "../format.js";
import { parseVolumeFlags } from "./volumes.js";

export const createCommand: CliCommand = {
  name: "create",
  usage:
    "[--template NAME] [--vcpus N] [--memory MB] [--disk MB] [--timeout DURATION] [--env K=V]... [--metadata K=V]... [--cwd PATH] [--volume NAME:/path[:ro]]... [--port N]... [--snapshot SNAPSHOT_ID] [--json]",
  summary: "Create a sandbox and print its id",
  options: {
    template: { type: "string", short: "t" },
    vcpus: { type: "string" },
    memory: { type: "string" },
    disk: { type: "string" },
    timeout: { type: "string" },
    env: { type: "string", short: "e", multiple: true },
    metadata: { type: "string", short: "m", multiple: true },
    cwd: { type: "string" },
    runtime: { type: "string" },
    image: { type: "string" },
    git: { type: "string" },
    tarball: { type: "string" },
    volume: { type: "string", short: "v", multiple: true },
    port: { type: "string", short: "p", multiple: true },
    snapshot: { type: "string" },
    ...jsonOption,
  },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`create: unexpected argument "${positionals[0]}"`);
    const vcpus = stringOption(values, "vcpus");
    const memory = stringOption(values, "memory");
    const disk = stringOption(values, "disk");
    const timeout = stringOption(values, "timeout");
    const resources: NonNullable<CreateSandboxRequest["resources"]> = {};
    if (vcpus !== undefined) resources.vcpus = parseInteger("--vcpus", vcpus);
    if (memory !== undefined) resources.memoryMb = parseSizeMb("--memory", memory);
    if (disk !== undefined) resources.diskMb = parseSizeMb("--disk", disk);
    const params: CreateSandboxRequest = {
      template: stringOption(values, "template"),
      resources,
      timeoutMs: timeout === undefined ? undefined : parseDuration("--timeout", timeout),
      env: parseKeyValues("--env", listOption(values, "env")),
      metadata: parseKeyValues("--metadata", listOption(values, "metadata")),
      cwd: stringOption(values, "cwd"),
      runtime: stringOption(values, "runtime") as CreateSandboxRequest["runtime"],
      source: sourceFrom(stringOption(values, "git"), stringOption(values, "tarball")),
      volumes: parseVolumeFlags(listOption(values, "volume")),
      ports: listOption(values, "port").map((port) => parseInteger("--port", port)),
      snapshotId: stringOption(values, "snapshot"),
    };
    const image = stringOption(values, "image");
    if (image !== undefined) params.image = { uri: image };
    const sandbox = await Sandbox.create(params, ctx.connection);
    ctx.stdout.write(flagOption(values, "json") ? toJson(sandbox) : `${sandbox.id}\n`);
    return 0;
  },
};

/** `--git URL[#REF]` or `--tarball URL` as a create request's source. */
function sourceFrom(git: string | undefined, tarball: string | undefined): CreateSandboxRequest["source"] {
  if (git !== undefined && tarball !== undefined) throw new UsageError("create: give --git or --tarball, not both");
  if (tarball !== undefined) return { type: "tarball", url: tarball };
  if (git === undefined) return undefined;
  const [url = "", ref] = git.split("#");
  return { type: "git", url, ...(ref ? { ref } : {}) };
}
