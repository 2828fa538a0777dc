#!/usr/bin/env node
import { run } from "./cli.js";

// exitCode rather than process.exit(), so that output still buffered in stdout is written first.
process.exitCode = await run(process.argv.slice(2));
