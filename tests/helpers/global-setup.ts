import { existsSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { cleanupInstance } from "./cleanup.js";
import { serverEntry, testTemplatesDir } from "./paths.js";
import { TEST_DATA_PREFIX } from "./server.js";

/**
 * Builds the built-in templates once for the whole run, with its progress on stderr. The teardown removes
 * whatever a test server that was never closed left on the host (a crashed or timed-out test file).
 */
export default async function setup() {
  if (!existsSync(serverEntry)) throw new Error(`${serverEntry} is missing: run "npm run build" first`);
  const { TemplateService } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const templates = new TemplateService(
    testTemplatesDir,
    process.env.SANDPIT_DEBIAN_MIRROR ?? "http://deb.debian.org/debian",
  );
  // All at once: the Debian ones (base, code-interpreter, desktop) are mmdebstrap runs that mostly wait on
  // downloads, and the presets over base join base's build.
  const names = ["base", "python3.13", "node22", "node24", "code-interpreter", "desktop"];
  await Promise.all(
    names.map(async (name) => {
      if ((await templates.get(null, name)).status === "ready") return;
      const build = templates.startBuild(name);
      build.on("event", (e: { type: string; phase?: string; percent?: number | null }) => {
        if (e.type === "progress") process.stderr.write(`[template ${name}] ${e.phase} ${e.percent ?? ""}%\n`);
      });
      await build.done;
    }),
  );
  return async function teardown() {
    for (const name of await readdir("/var/tmp").catch(() => [] as string[])) {
      const dataDir = path.join("/var/tmp", name);
      if (!dataDir.startsWith(TEST_DATA_PREFIX)) continue;
      const instance = await readFile(path.join(dataDir, "instance.json"), "utf8").catch(() => undefined);
      if (!instance) continue;
      const { netPrefix, owner } = JSON.parse(instance) as { netPrefix: string; owner?: number };
      // A test process of another run going on in parallel still uses it: not ours to clean.
      if (owner && owner !== process.pid && existsSync(`/proc/${owner}`)) continue;
      process.stderr.write(`[teardown] cleaning up after ${dataDir} (${netPrefix})\n`);
      const pid = Number(await readFile(path.join(dataDir, "server.pid"), "utf8").catch(() => "0"));
      const cmdline = pid > 0 ? await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "") : "";
      if (cmdline.includes("tests/helpers/serve.ts")) process.kill(pid, "SIGKILL");
      await cleanupInstance(dataDir, netPrefix);
      await rm(dataDir, { recursive: true, force: true });
    }
  };
}
