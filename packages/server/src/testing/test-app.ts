import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { buildApp } from "../app.js";
import { wireServices } from "../composition.js";
import { loadConfig, type ServerConfig } from "../config.js";
import { EgressAudit } from "../network/egress-audit.js";
import { EgressCa } from "../network/egress-ca.js";
import type { AppServices } from "../services/index.js";
import { SqliteStore } from "../store/sqlite-store.js";
import { FakeRuntime } from "./fake-runtime.js";

export interface TestApp {
  app: FastifyInstance;
  services: AppServices;
  runtime: FakeRuntime;
  /** An API key of the organisation "default". */
  apiKey: string;
  close(): Promise<void>;
}

/**
 * The whole HTTP app over real services, a temporary SQLite store and a {@link FakeRuntime}, for
 * `app.inject()` tests (no root, no sockets, no sandboxes).
 */
export async function createTestApp(overrides: Partial<ServerConfig> = {}): Promise<TestApp> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "sandpit-inject-"));
  const config = loadConfig({
    dataDir,
    databaseUrl: undefined,
    templatesDir: path.join(dataDir, "templates"),
    apiKey: undefined,
    adminKey: undefined,
    warmPools: [],
    domain: undefined,
    ...overrides,
  });
  const logger = pino({ level: "silent" });
  const store = new SqliteStore(path.join(dataDir, "sandpit.db"));
  const runtime = new FakeRuntime();
  const composition = await wireServices(config, {
    store,
    runtime,
    // Never started: there is no firewall whose counters it would read.
    egressAudit: new EgressAudit(store, {
      table: "fake",
      subnet: config.sandboxSubnet,
      retentionMs: config.egressLogRetentionMs,
      log: logger,
    }),
    egressCa: new EgressCa(path.join(dataDir, "egress-ca")),
    logger,
  });
  const { key } = await composition.services.auth.createKey("default", "inject tests");
  const app = buildApp(composition.services, logger);
  await app.ready();
  return {
    app,
    services: composition.services,
    runtime,
    apiKey: key,
    async close() {
      await app.close();
      await composition.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
