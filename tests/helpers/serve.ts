// A test server in its own process, so that tests can kill -9 it like a crash would.
import { serverEntry } from "./paths.js";

const { startServer } = (await import(serverEntry)) as typeof import("../../packages/server/src/index.js");
const server = await startServer();
process.stdout.write(`${JSON.stringify({ ready: true, url: server.url })}\n`);
const stop = () => {
  setTimeout(() => {
    process.stderr.write("serve: close did not finish in 10 s\n");
    process.exit(1);
  }, 10_000).unref();
  server.close().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
