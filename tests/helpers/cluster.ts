import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { startPostgres, type TestPostgres } from "./postgres.js";
import { startTestServer, type TestServer } from "./server.js";

export interface TestNode extends TestServer {
  nodeId: string;
}

export interface TestCluster {
  postgres: TestPostgres;
  databaseUrl: string;
  sharedDir: string;
  secret: string;
  nodes: TestNode[];
  /** Starts one more node of the cluster (`env` on top of the cluster's). */
  addNode(env?: Record<string, string>): Promise<TestNode>;
  /** Closes every node (destroying their sandboxes), then PostgreSQL, and removes the shared directory. */
  close(): Promise<void>;
}

/**
 * `n` real nodes (each a `sandpit serve` process with its own data directory, network prefix, subnet and
 * port) on one PostgreSQL, with one shared directory and one cluster secret. Every node's API key belongs
 * to the organisation `default`, so any key works on any node.
 */
export async function startCluster(n: number, env: Record<string, string> = {}): Promise<TestCluster> {
  const postgres = await startPostgres();
  const databaseUrl = await postgres.createDatabase("sandpit");
  const sharedDir = mkdtempSync("/var/tmp/sandpit-test-shared-");
  const secret = randomBytes(24).toString("hex");
  const nodes: TestNode[] = [];
  const addNode = async (extra: Record<string, string> = {}): Promise<TestNode> => {
    const nodeId = `node-${nodes.length + 1}`;
    const server = await startTestServer({
      SANDPIT_DATABASE_URL: databaseUrl,
      SANDPIT_SHARED_DIR: sharedDir,
      SANDPIT_CLUSTER_SECRET: secret,
      SANDPIT_NODE_ID: nodeId,
      SANDPIT_NODE_LEASE_TTL_MS: "3000",
      ...env,
      ...extra,
    });
    const node = Object.assign(server, { nodeId });
    nodes.push(node);
    return node;
  };
  const cluster: TestCluster = {
    postgres,
    databaseUrl,
    sharedDir,
    secret,
    nodes,
    addNode,
    async close() {
      await Promise.all(nodes.map((node) => node.close().catch(() => undefined)));
      await postgres.close();
      await rm(sharedDir, { recursive: true, force: true });
    },
  };
  try {
    // One at a time: the first applies the migrations while the others would wait for its lock anyway.
    for (let i = 0; i < n; i++) await addNode();
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}

/**
 * The sandboxes whose runsc containers are on a node's host (what it runs, whatever its database says):
 * a sandbox resumed in place runs as container `<id>.<n>`.
 */
export function containersOf(node: Pick<TestNode, "dataDir">): string[] {
  const out = execFileSync("runsc", [`--root=${path.join(node.dataDir, "runsc")}`, "list", "-quiet"], {
    encoding: "utf8",
  });
  return out
    .split("\n")
    .filter(Boolean)
    .map((container) => container.replace(/\.\d+$/, ""));
}
