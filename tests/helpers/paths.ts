import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** Built templates are shared by every test server (building `base` takes a minute). */
export const testTemplatesDir = process.env.SANDPIT_TEST_TEMPLATES_DIR ?? "/var/lib/sandpit-test/templates";
export const serverEntry = path.join(repoRoot, "packages/server/dist/index.js");
