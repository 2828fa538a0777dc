import { stringOption, UsageError } from "../args.js";
import type { CliCommand } from "../command.js";

export const serveCommand: CliCommand = {
  name: "serve",
  usage: "[--listen HOST:PORT] [--data-dir DIR] [--api-key KEY]",
  summary: "Run the Sandpit server in the foreground until SIGINT or SIGTERM",
  options: { listen: { type: "string" }, "data-dir": { type: "string" } },
  async run({ values, positionals }, ctx) {
    if (positionals.length > 0) throw new UsageError(`serve: unexpected argument "${positionals[0]}"`);
    const { startServer } = await import("@sandpit/server");
    const listen = stringOption(values, "listen");
    const dataDir = stringOption(values, "data-dir");
    // --api-key (not the SANDPIT_API_KEY fallback, which the server reads itself) seeds the server's key.
    const apiKey = ctx.connection.apiKey;
    const server = await startServer({
      ...(listen === undefined ? {} : { listen }),
      ...(dataDir === undefined ? {} : { dataDir }),
      ...(apiKey === undefined ? {} : { apiKey }),
    });
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    ctx.stderr.write(`sandpit: ${signal}, shutting down\n`);
    await server.close();
    return 0;
  },
};
