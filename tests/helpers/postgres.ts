import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";

/** A throwaway PostgreSQL cluster of a test file, listening only on a unix socket in its own directory. */
export interface TestPostgres {
  /** Directory of the cluster (data, socket, log). */
  dir: string;
  /** Creates an empty database and answers its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the postmaster (fast shutdown: clients' connections end), keeping the data: an outage. */
  stop(): Promise<void>;
  /** Starts it again on the same data, after `stop`. */
  start(): Promise<void>;
  /** Stops the postmaster this helper started and removes the cluster. */
  close(): Promise<void>;
}

const PREFIX = "/var/tmp/sandpit-test-pg-";

function pgBin(name: string): string {
  const versions = readdirSync("/usr/lib/postgresql")
    .filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/${name}`))
    .sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error("PostgreSQL is not installed: run scripts/install-system-deps.sh");
  return `/usr/lib/postgresql/${versions[0]}/bin/${name}`;
}

/** As the `postgres` user: initdb and the postmaster refuse to run as root. */
function asPostgres(argv: string[]) {
  execFileSync("runuser", ["-u", "postgres", "--", ...argv], { stdio: ["ignore", "pipe", "pipe"] });
}

function postmasterPid(dir: string): number | undefined {
  const file = path.join(dir, "data", "postmaster.pid");
  const pid = existsSync(file) ? Number(readFileSync(file, "utf8").split("\n")[0]) : 0;
  return pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
}

/** Stops the postmaster of `dir` (fast shutdown: it ends its own backends), waiting for it to exit. */
async function stopPostmaster(dir: string) {
  const pid = postmasterPid(dir);
  if (pid === undefined) return;
  // The pid file could be stale and the pid reused: only a postgres process of this data directory.
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  if (!cmdline.includes(path.join(dir, "data"))) return;
  process.kill(pid, "SIGINT");
  const deadline = Date.now() + 20_000;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (existsSync(`/proc/${pid}`)) process.kill(pid, "SIGKILL");
}

function startPostmaster(dir: string) {
  // No TCP at all; durability is not what these tests are about.
  const options = `-c listen_addresses='' -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  const data = path.join(dir, "data");
  asPostgres([pgBin("pg_ctl"), "-D", data, "-l", path.join(dir, "log"), "-o", options, "-w", "start"]);
}

/** Clusters of test processes that died before their teardown. */
async function removeAbandoned() {
  for (const name of readdirSync("/var/tmp")) {
    const dir = path.join("/var/tmp", name);
    if (!dir.startsWith(PREFIX)) continue;
    const ownerFile = path.join(dir, "owner");
    // No owner yet: another test process is making it right now.
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, "utf8").trim() || "0");
    if (owner && existsSync(`/proc/${owner}`)) continue;
    await stopPostmaster(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts a cluster for this test process (one per test file: initdb takes a second or two). */
export async function startPostgres(): Promise<TestPostgres> {
  await removeAbandoned().catch(() => undefined);
  const dir = mkdtempSync(PREFIX);
  writeFileSync(path.join(dir, "owner"), String(process.pid));
  const data = path.join(dir, "data");
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  chownSync(dir, uid, gid);
  try {
    asPostgres([pgBin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    startPostmaster(dir);
  } catch (e) {
    await stopPostmaster(dir);
    rmSync(dir, { recursive: true, force: true });
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`starting PostgreSQL failed: ${stderr || (e as Error).message}`);
  }
  const urlOf = (database: string) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(dir)}`;
  return {
    dir,
    async createDatabase(name) {
      const admin = new pg.Client({ connectionString: urlOf("postgres") });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${name}"`);
      } finally {
        await admin.end();
      }
      return urlOf(name);
    },
    stop: () => stopPostmaster(dir),
    async start() {
      startPostmaster(dir);
    },
    async close() {
      await stopPostmaster(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads (or writes) a database directly, as an operator would, on a connection of its own. */
export async function queryDatabase<T>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}
