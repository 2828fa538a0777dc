#!/usr/bin/env node
// The `sandpit` command. It is committed (not built) so that `npm ci` links it into node_modules/.bin on a
// fresh clone, before `npm run build` has produced dist/; otherwise `npx sandpit` finds no local command and
// falls back to the SDK package, also named `sandpit`, which has none.
try {
  await import("../dist/main.js");
} catch (err) {
  if (err?.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/main.js")) {
    process.stderr.write("sandpit: the CLI is not built yet; run `bash scripts/setup.sh` (or `npm run build`) first\n");
    process.exit(1);
  }
  throw err;
}
