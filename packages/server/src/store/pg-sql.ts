import pg from "pg";
import { StoreUnavailableError } from "../domain/index.js";

/** A pool, or a client inside a transaction. */
export type Queryable = pg.Pool | pg.PoolClient;

/**
 * Keys of the advisory locks the PostgreSQL store takes (one number space per database; these are far
 * from small numbers other applications on the same database might use).
 */
export const ADVISORY_LOCKS = {
  /** Held while migrations run, so that two servers starting at once do not both apply one. */
  migrate: 7_353_100_001,
  /** With the node id's hash: held by the server running as that node, for as long as it runs. */
  node: 7_353_102,
  /** With the node id's hash: held while a create on that node chooses a network slot. */
  netSlots: 7_353_103,
  /** Held while events are inserted, until commit: ids become visible in the order they are handed out. */
  events: 7_353_100_004,
  /** The same for the egress log's sequence numbers. */
  egress: 7_353_100_005,
} as const;

/** 64-bit integers (counts, sums, times in ms, identities) as numbers: every value the store keeps fits. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8 && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

export function createPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000, types });
  // An idle connection that broke (the database restarted) is dropped by the pool; the next query opens
  // another. Without a listener the error would end the process.
  pool.on("error", () => undefined);
  return pool;
}

/** `?` placeholders (outside quoted strings) as PostgreSQL's `$1, $2, …`: the SQL stores share their SQL. */
export function numbered(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = "";
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === "?" && !quoted ? `$${++n}` : ch;
  }
  return out;
}

/** PostgreSQL's text cannot hold NUL: U+FFFD stands in for it (a DNS name a sandbox asked for may have one). */
function param(value: unknown): unknown {
  return typeof value === "string" && value.includes("\0") ? value.replaceAll("\0", "\uFFFD") : value;
}

const CONNECTION_ERRNOS = new Set(["ECONNREFUSED", "ENOENT", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH"]);

/**
 * Whether an error means the database could not be reached or went away (rather than refusing the
 * statement): a socket error, the pool or client giving up on the connection, or the server shutting
 * down or still starting (SQLSTATE classes 08 and 57P).
 */
export function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && (CONNECTION_ERRNOS.has(code) || code.startsWith("08") || code.startsWith("57P"))) {
    return true;
  }
  return /Connection terminated|connection error|timeout exceeded when trying to connect|not queryable/i.test(
    e.message,
  );
}

/** Runs a query; a lost or refused connection becomes a StoreUnavailableError (the API answers 503). */
async function query(db: Queryable, sql: string, values: unknown[]): Promise<pg.QueryResult> {
  try {
    return await db.query(numbered(sql), values.map(param));
  } catch (e) {
    throw isConnectionError(e) ? new StoreUnavailableError(e) : e;
  }
}

export async function all<T>(db: Queryable, sql: string, values: unknown[] = []): Promise<T[]> {
  return (await query(db, sql, values)).rows as T[];
}

export async function first<T>(db: Queryable, sql: string, values: unknown[] = []): Promise<T | undefined> {
  return (await all<T>(db, sql, values))[0];
}

/** Runs a statement; returns how many rows it changed. */
export async function run(db: Queryable, sql: string, values: unknown[] = []): Promise<number> {
  return (await query(db, sql, values)).rowCount ?? 0;
}

/** Waits for a transaction-scoped advisory lock (released at commit or rollback). */
export async function lockUntilCommit(tx: pg.PoolClient, key: number): Promise<void> {
  await query(tx, "SELECT pg_advisory_xact_lock(?)", [key]);
}

/** Runs `work` in a transaction on one connection of the pool: committed when it returns, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const tx = await pool.connect().catch((e: unknown) => {
    throw isConnectionError(e) ? new StoreUnavailableError(e) : e;
  });
  let broken: Error | undefined;
  // The pool listens for errors of idle connections only: one that breaks while this transaction holds it
  // (the database shut down between two statements) would otherwise be an unhandled 'error' event. The
  // next statement fails on it, and the connection is dropped instead of going back to the pool.
  const onError = (e: Error) => {
    broken = e;
  };
  tx.on("error", onError);
  try {
    await query(tx, "BEGIN", []);
    const result = await work(tx);
    await query(tx, "COMMIT", []);
    return result;
  } catch (e) {
    // A connection that cannot even roll back is not given back to the pool.
    await tx.query("ROLLBACK").catch((rollbackError: Error) => {
      broken = rollbackError;
    });
    throw e;
  } finally {
    tx.off("error", onError);
    tx.release(broken);
  }
}
