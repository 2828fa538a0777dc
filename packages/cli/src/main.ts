#!/usr/bin/env node
import { run } from "./cli.js";

// A reader that went away (`sandpit exec ID -- yes | head`) is not an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

// exitCode rather than process.exit(), so that output still buffered in stdout is written first.
process.exitCode = await run(process.argv.slice(2));
