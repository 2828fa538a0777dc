import { existsSync } from "node:fs";
import { serverEntry, testTemplatesDir } from "./paths.js";

/** Builds the `base` template once for the whole run, with its progress on stderr. */
export default async function setup() {
  if (!existsSync(serverEntry)) throw new Error(`${serverEntry} is missing: run "npm run build" first`);
  const { TemplateService } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
  const templates = new TemplateService(
    testTemplatesDir,
    process.env.SANDPIT_DEBIAN_MIRROR ?? "http://deb.debian.org/debian",
  );
  if ((await templates.get("base")).status !== "ready") {
    const build = templates.startBuild("base");
    build.on("event", (e: { type: string; phase?: string; percent?: number | null }) => {
      if (e.type === "progress") process.stderr.write(`[template base] ${e.phase} ${e.percent ?? ""}%\n`);
    });
    await build.done;
  }
}
