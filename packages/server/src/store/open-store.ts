import path from "node:path";
import type { ServerConfig } from "../config.js";
import { PgStore } from "./pg-store.js";
import { SqliteStore } from "./sqlite-store.js";
import type { Store } from "./store.js";

/**
 * The store the configuration names, working for the configured node: PostgreSQL when
 * `SANDPIT_DATABASE_URL` is set (shared by every node of a cluster), otherwise SQLite in the data
 * directory. `server`: the store of a running server, which holds its node id for as long as it runs.
 */
export async function openStore(
  config: Pick<ServerConfig, "databaseUrl" | "dataDir" | "cluster">,
  opts: { server?: boolean } = {},
): Promise<Store> {
  const nodeId = config.cluster.nodeId;
  if (config.databaseUrl) return PgStore.open(config.databaseUrl, { nodeId, holdNode: opts.server ?? false });
  return new SqliteStore(path.join(config.dataDir, "sandpit.db"), nodeId);
}
