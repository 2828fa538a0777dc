import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const attempt = (file: string, args: string[]) => run(file, args).catch(() => undefined);

/**
 * Removes whatever a test server instance left on the host: runsc containers, mounts, network
 * namespaces, veths and its nftables table. Normally there is nothing left; this makes sure.
 */
export async function cleanupInstance(dataDir: string, netPrefix: string) {
  const runscRoot = path.join(dataDir, "runsc");
  if (existsSync(runscRoot)) {
    const out = await run("runsc", [`--root=${runscRoot}`, "list", "-quiet"]).catch(() => ({ stdout: "" }));
    for (const id of out.stdout.split("\n").filter(Boolean)) {
      await attempt("runsc", [`--root=${runscRoot}`, "delete", "-force", id]);
    }
  }
  const sandboxesDir = path.join(dataDir, "sandboxes");
  for (const id of await readdir(sandboxesDir).catch(() => [] as string[])) {
    await attempt("umount", ["-l", path.join(sandboxesDir, id, "rootfs")]);
    await attempt("umount", ["-l", path.join(sandboxesDir, id, "disk")]);
  }
  // Volume disks and staged volume mounts: whatever is still mounted beneath the data directory, deepest
  // first, so that removing the directory never reaches into a mounted filesystem.
  const mountTable = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const mounted = mountTable
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(`${dataDir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounted) await attempt("umount", ["-l", point]);
  const netns = await run("ip", ["netns", "list"]).catch(() => ({ stdout: "" }));
  for (const line of netns.stdout.split("\n")) {
    const name = line.split(" ")[0];
    if (name?.startsWith(`${netPrefix}-sandbox-`)) await attempt("ip", ["netns", "delete", name]);
  }
  const links = await run("ip", ["-o", "link", "show"]).catch(() => ({ stdout: "" }));
  for (const m of links.stdout.matchAll(new RegExp(`^\\d+: (${netPrefix}h\\d+)[@:]`, "gm"))) {
    await attempt("ip", ["link", "delete", m[1]!]);
  }
  await attempt("nft", ["delete", "table", "inet", `sandpit_${netPrefix}`]);
}
