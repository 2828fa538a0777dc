import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { cleanupInstance } from "./cleanup.js";
import { repoRoot, testTemplatesDir } from "./paths.js";

export interface TestServer {
  url: string;
  apiKey: string;
  dataDir: string;
  netPrefix: string;
  subnet: string;
  pid: number;
  /** Destroys every sandbox, stops the server and removes everything it made on the host. */
  close(): Promise<void>;
  /** Stops the server the normal way (SIGTERM), leaving its sandboxes and whatever it keeps on the host. */
  stop(): Promise<void>;
  /** SIGKILLs the server process (sandboxes keep running), as a crash would. */
  kill9(): Promise<void>;
  /** Starts the server again on the same data directory (on a new port: read `url` afterwards). */
  restart(): Promise<void>;
}

const SLOT_DIR = "/var/tmp/sandpit-test-slots";
export const TEST_DATA_PREFIX = "/var/tmp/sandpit-test-";
const SLOTS = 26 * 26;

/**
 * Claims a unique instance identity (veth/netns prefix and subnet) for a test server, also across test
 * files running in parallel: a slot is a file created exclusively, holding the claimer's pid; slots of
 * processes that are gone are taken over.
 */
function claimIdentity(): { netPrefix: string; subnet: string; release(): void } {
  mkdirSync(SLOT_DIR, { recursive: true });
  const start = Math.floor(Math.random() * SLOTS);
  for (let i = 0; i < SLOTS; i++) {
    const n = (start + i) % SLOTS;
    const file = path.join(SLOT_DIR, String(n));
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
    } catch {
      const holder = Number(readFileSync(file, "utf8") || "0");
      if (holder && existsSync(`/proc/${holder}`)) continue;
      rmSync(file, { force: true });
      try {
        writeFileSync(file, String(process.pid), { flag: "wx" });
      } catch {
        continue;
      }
    }
    const letter = (k: number) => String.fromCharCode(97 + k);
    return {
      netPrefix: `t${letter(Math.floor(n / 26))}${letter(n % 26)}`,
      subnet: `10.${200 + Math.floor(n / 32)}.${(n % 32) * 8}.0`,
      release: () => rmSync(file, { force: true }),
    };
  }
  throw new Error("no free test server slot");
}

/** Server logs of the test run, one file per server instance, kept for post-mortems. */
export const testLogDir = "/var/tmp/sandpit-test-logs";

async function spawnServer(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "tests/helpers/serve.ts")], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
    cwd: repoRoot,
  });
  mkdirSync(testLogDir, { recursive: true });
  const logFile = createWriteStream(path.join(testLogDir, `${env.SANDPIT_NET_PREFIX}.log`), { flags: "a" });
  child.stdout!.pipe(logFile);
  let log = "";
  child.stderr!.on("data", (c: Buffer) => {
    log += c.toString();
    logFile.write(c);
    if (process.env.SANDPIT_TEST_SERVER_LOG) process.stderr.write(c);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const onData = (c: Buffer) => {
      out += c.toString();
      for (const line of out.split("\n")) {
        if (line.startsWith('{"ready"')) {
          child.stdout!.off("data", onData);
          resolve((JSON.parse(line) as { url: string }).url);
          return;
        }
      }
    };
    child.stdout!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`test server exited with ${code}: ${log.slice(-3000)}`)));
  });
  child.stdout!.resume();
  return { child, url };
}

export async function startTestServer(extraEnv: Record<string, string> = {}): Promise<TestServer> {
  const id = claimIdentity();
  const dataDir = mkdtempSync(`${TEST_DATA_PREFIX}`);
  // Lets the global teardown clean up after a test process that died before its own cleanup.
  // `owner`: the test process using it; the teardown of another test run leaves it alone while it lives.
  writeFileSync(path.join(dataDir, "instance.json"), JSON.stringify({ netPrefix: id.netPrefix, owner: process.pid }));
  const apiKey = `sp_test${randomBytes(16).toString("hex")}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SANDPIT_DATA_DIR: dataDir,
    SANDPIT_TEMPLATES_DIR: testTemplatesDir,
    SANDPIT_API_KEY: apiKey,
    SANDPIT_LISTEN: "127.0.0.1:0",
    SANDPIT_NET_PREFIX: id.netPrefix,
    SANDPIT_SANDBOX_SUBNET: id.subnet,
    SANDPIT_LOG_LEVEL: "info",
    // Tests keep sandboxes idle between their calls and expect them running; the live-idle limit, which
    // hibernates them early, has its own test (tests/lifecycle/hibernate-pressure.test.ts).
    SANDPIT_LIVE_IDLE_MAX: "1000",
    ...extraEnv,
  };
  let started: Awaited<ReturnType<typeof spawnServer>>;
  try {
    started = await spawnServer(env);
  } catch (e) {
    await cleanupInstance(dataDir, id.netPrefix);
    await rm(dataDir, { recursive: true, force: true });
    id.release();
    throw e;
  }
  let { child, url } = started;
  const recordPid = () => writeFileSync(path.join(dataDir, "server.pid"), String(child.pid));
  recordPid();
  const server: TestServer = {
    url,
    apiKey,
    dataDir,
    netPrefix: id.netPrefix,
    subnet: id.subnet,
    get pid() {
      return child.pid!;
    },
    async close() {
      // A server killed by a signal has no exit code but a signal code: it must not be waited for.
      if (child.exitCode === null && child.signalCode === null) {
        await destroyAll(server).catch(() => undefined);
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await cleanupInstance(dataDir, id.netPrefix);
      await rm(dataDir, { recursive: true, force: true });
      id.release();
    },
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
    async kill9() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
    /** Starts the server again on the same data directory (on a new port: read `url` afterwards). */
    async restart() {
      ({ child, url } = await spawnServer(env));
      server.url = url;
      recordPid();
    },
  };
  return server;
}

async function destroyAll(server: TestServer) {
  const res = await fetch(`${server.url}/v1/sandboxes?limit=1000`, {
    headers: { authorization: `Bearer ${server.apiKey}` },
  });
  const { sandboxes } = (await res.json()) as { sandboxes: { id: string }[] };
  await Promise.all(
    sandboxes.map((s) =>
      fetch(`${server.url}/v1/sandboxes/${s.id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${server.apiKey}` },
      }),
    ),
  );
}
