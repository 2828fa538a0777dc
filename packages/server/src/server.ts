import { mkdir } from "node:fs/promises";
import pino from "pino";
import { buildApp } from "./app.js";
import { createServices, parseHostPort } from "./composition.js";
import { loadConfig, type ServerConfig } from "./config.js";
import type { ApiKeyFormat } from "./lib/ids.js";
import { AuthService } from "./services/auth-service.js";
import { openStore } from "./store/open-store.js";

export interface StartServerOptions {
  listen?: string;
  dataDir?: string;
  apiKey?: string;
  /** Separates several servers on one host: veth/netns names and the nftables table. Default "sp". */
  netPrefix?: string;
  sandboxSubnet?: string;
  templatesDir?: string;
}

export interface RunningServer {
  url: string;
  /** The key generated on first start, if one was. */
  generatedApiKey: string | undefined;
  close(): Promise<void>;
}

const TICK_MS = 1000;

/**
 * Wires the services (`createServices`), reconciles the host with the database, runs the background
 * tick, and listens. Sandboxes keep running when the server stops; the next start picks them up.
 */
export async function startServer(opts: StartServerOptions = {}): Promise<RunningServer> {
  const config: ServerConfig = loadConfig({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.listen ? { listen: opts.listen } : {}),
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    ...(opts.sandboxSubnet ? { sandboxSubnet: opts.sandboxSubnet } : {}),
    ...(opts.templatesDir ? { templatesDir: opts.templatesDir } : {}),
  });
  const netPrefix = opts.netPrefix ?? process.env.SANDPIT_NET_PREFIX ?? "sp";
  if (!/^[a-z]{1,4}$/.test(netPrefix)) throw new Error("SANDPIT_NET_PREFIX must be 1-4 lowercase letters");
  // Asynchronous writes: a synchronous write to a slow reader (a pipe, a busy journald) would stall the
  // event loop, and every request with it. pino flushes what is buffered when the process exits.
  const logger = pino(
    { level: config.logLevel, base: { service: "sandpit", node: config.cluster.nodeId } },
    pino.destination({ sync: false }),
  );
  await mkdir(config.dataDir, { recursive: true });

  const composition = await createServices(config, { logger, netPrefix });
  const { services } = composition;

  let generatedApiKey: string | undefined;
  if (config.apiKey) await services.auth.registerKey("default", config.apiKey);
  else if (!(await services.auth.hasAnyKey())) {
    generatedApiKey = (await services.auth.createKey("default", "generated on first start")).key;
    process.stderr.write(`\nSandpit API key for organisation "default" (shown once):\n\n  ${generatedApiKey}\n\n`);
  }

  await composition.reconcile();
  services.metricsSampler.start();
  let ticking = false;
  let ticks = 0;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    ticks++;
    composition
      .maintain(ticks)
      .catch((e) => logger.error({ err: e }, "background tick failed"))
      .finally(() => {
        ticking = false;
      });
  }, TICK_MS);

  const app = buildApp(services, logger);
  const { host, port } = parseHostPort(config.listen);
  const address = await app.listen({ host, port });
  await services.membership.join(address);
  logger.info(
    {
      address,
      node: config.cluster.nodeId,
      dataDir: config.dataDir,
      store: config.databaseUrl ? "postgresql" : "sqlite",
    },
    "sandpit listening",
  );

  return {
    url: address,
    generatedApiKey,
    async close() {
      clearInterval(timer);
      services.metricsSampler.stop();
      await app.close();
      await composition.close();
    },
  };
}

/** Creates an API key for an organisation (creating the organisation) directly in the data directory. */
export async function createApiKey(opts: {
  dataDir?: string;
  org: string;
  /** `e2b`: a key in E2B's shape (`e2b_<hex>`), for E2B clients. */
  format?: ApiKeyFormat;
}): Promise<{ key: string; org: string }> {
  const config = loadConfig(opts.dataDir ? { dataDir: opts.dataDir } : {});
  const store = await openStore(config);
  try {
    const { key, org } = await new AuthService(store).createKey(opts.org, "created", opts.format);
    return { key, org: org.name };
  } finally {
    await store.close();
  }
}
