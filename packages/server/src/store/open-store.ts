import path from "node:path";
import type { ServerConfig } from "../config.js";
import { PgStore } from "./pg-store.js";
import { SqliteStore } from "./sqlite-store.js";
import type { Store } from "./store.js";

/**
 * The store the configuration names: PostgreSQL when `SANDPIT_DATABASE_URL` is set, otherwise SQLite in
 * the data directory. `server`: the store of a running server, which holds a PostgreSQL database for
 * itself (several servers on one database are not supported yet).
 */
export async function openStore(
  config: Pick<ServerConfig, "databaseUrl" | "dataDir">,
  opts: { server?: boolean } = {},
): Promise<Store> {
  if (config.databaseUrl) return PgStore.open(config.databaseUrl, { exclusive: opts.server ?? false });
  return new SqliteStore(path.join(config.dataDir, "sandpit.db"));
}
