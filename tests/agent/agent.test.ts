/**
 * Builds the in-sandbox agent and runs it on the host as a normal process (not PID 1, so it serves
 * directly), then exercises every endpoint through AgentClient.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AgentClient,
  AgentError,
  type AgentExecEvent,
  type AgentExecRequest,
  type AgentExit,
  AgentUnreachableError,
} from "../../packages/server/src/agent/agent-client.js";
import { encodeFrame, FRAME_STARTED, FRAME_STDOUT } from "../../packages/server/src/agent/frames.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const binary = path.join(repo, "packages/agent/build/sandpit-agent");
const TOKEN = `test-${randomBytes(8).toString("hex")}`;
const ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

let tmp: string;
let runDir: string;
let agentProc: ChildProcess;
let agentLog = "";
let port: number;
let client: AgentClient;
let seq = 0;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") return reject(new Error("no port"));
      srv.close(() => resolve(addr.port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function req(args: string[], extra: Partial<AgentExecRequest> = {}): AgentExecRequest {
  return { id: `t${++seq}`, args, env: ENV, cwd: "/", ...extra };
}

interface Run {
  events: AgentExecEvent[];
  stdout: Buffer;
  stderr: Buffer;
  exit: AgentExit;
  pid: number;
}

async function collect(events: AsyncIterable<AgentExecEvent>): Promise<Run> {
  const all: AgentExecEvent[] = [];
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let exit: AgentExit | undefined;
  let pid = 0;
  for await (const e of events) {
    all.push(e);
    if (e.type === "stdout") out.push(e.data);
    else if (e.type === "stderr") err.push(e.data);
    else if (e.type === "started") pid = e.pid;
    else if (e.type === "exit") {
      const { type: _t, ...rest } = e;
      exit = rest;
    }
  }
  if (!exit) throw new Error("no exit event");
  return { events: all, stdout: Buffer.concat(out), stderr: Buffer.concat(err), exit, pid };
}

const run = (args: string[], extra: Partial<AgentExecRequest> = {}) => collect(client.exec(req(args, extra)));
const sh = (script: string, extra: Partial<AgentExecRequest> = {}) => run(["sh", "-c", script], extra);

/** Live (not zombie, not gone) per /proc. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function waitDead(pids: number[], ms = 3000): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const living = pids.filter(alive);
    if (living.length === 0 || Date.now() > deadline) return living;
    await sleep(20);
  }
}

function pidsOf(text: Buffer | string): number[] {
  return text
    .toString()
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

function agentStatus(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${agentProc.pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

async function expectAgentError(p: Promise<unknown>, status: number, code: string) {
  const e: unknown = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(AgentError);
  expect((e as AgentError).status).toBe(status);
  expect((e as AgentError).code).toBe(code);
}

async function sha256(stream: Readable): Promise<{ hash: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hash: h.digest("hex"), size };
}

beforeAll(async () => {
  execFileSync("make", ["-s", "-C", path.join(repo, "packages/agent")], { stdio: "inherit" });
  tmp = mkdtempSync(path.join(os.tmpdir(), "sandpit-agent-test-"));
  runDir = path.join(tmp, "run");
  port = await freePort();
  // Started with SIGUSR1 and SIGUSR2 ignored, as a parent may leave them: commands must not inherit that.
  agentProc = spawn("/bin/sh", ["-c", `trap '' USR1 USR2; exec "$0"`, binary], {
    env: {
      SANDPIT_AGENT_LISTEN: `127.0.0.1:${port}`,
      SANDPIT_AGENT_TOKEN: TOKEN,
      SANDPIT_AGENT_RUN_DIR: runDir,
      SANDPIT_AGENT_ALLOW: "127.0.0.1",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  agentProc.stderr?.on("data", (d: Buffer) => {
    agentLog += d.toString();
  });
  client = new AgentClient({ host: "127.0.0.1", port, token: TOKEN });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.health({ timeoutMs: 500 });
      break;
    } catch (e) {
      if (Date.now() > deadline || agentProc.exitCode !== null)
        throw new Error(`agent did not start: ${String(e)}\n${agentLog}`);
      await sleep(20);
    }
  }
}, 120_000);

afterAll(async () => {
  client?.close();
  if (agentProc?.pid && agentProc.exitCode === null) {
    const exited = new Promise((r) => agentProc.once("exit", r));
    process.kill(agentProc.pid, "SIGTERM"); // the agent kills its running commands, then exits
    await Promise.race([exited, sleep(3000)]);
    if (agentProc.exitCode === null && agentProc.signalCode === null) process.kill(agentProc.pid, "SIGKILL");
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("health and auth", () => {
  it("answers health with its pid", async () => {
    const h = await client.health();
    expect(h).toEqual({ ok: true, version: expect.any(String), pid: agentProc.pid });
  });

  it("rejects a wrong token with 401", async () => {
    const bad = new AgentClient({ host: "127.0.0.1", port, token: "wrong" });
    try {
      await expectAgentError(bad.health(), 401, "unauthorized");
      await expectAgentError(bad.stat("/"), 401, "unauthorized");
      await expectAgentError(collect(bad.exec(req(["true"]))), 401, "unauthorized");
    } finally {
      bad.close();
    }
  });

  it("reports an unreachable agent as AgentUnreachableError", async () => {
    const nobody = new AgentClient({ host: "127.0.0.1", port: await freePort(), token: TOKEN });
    try {
      await expect(nobody.health()).rejects.toBeInstanceOf(AgentUnreachableError);
    } finally {
      nobody.close();
    }
  });
});

describe("exec", () => {
  it("streams stdout and stderr in order, started first and exit last", async () => {
    const r = await sh("echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c; exit 3");
    const kinds = r.events.map((e) =>
      e.type === "stdout" || e.type === "stderr" ? `${e.type}:${e.data.toString()}` : e.type,
    );
    expect(kinds).toEqual(["started", "stdout:a\n", "stderr:b\n", "stdout:c\n", "exit"]);
    expect(r.pid).toBeGreaterThan(1);
    expect(r.exit).toMatchObject({ exitCode: 3, signal: null, timedOut: false, truncated: false });
    expect(r.exit.durationMs).toBeGreaterThanOrEqual(90);
  });

  it("reports exit codes and signals like a shell", async () => {
    expect((await run(["true"])).exit.exitCode).toBe(0);
    expect((await run(["false"])).exit.exitCode).toBe(1);
    expect((await sh("exit 255")).exit.exitCode).toBe(255);
    const killed = await sh("kill -TERM $$; sleep 5");
    expect(killed.exit).toMatchObject({ exitCode: 143, signal: 15, timedOut: false });
  });

  it("starts commands with every signal at its default and none blocked, whatever the agent ignores", async () => {
    const agentSignals = readFileSync(`/proc/${agentProc.pid}/status`, "utf8");
    // The agent ignores SIGPIPE (13) and what it inherited (SIGUSR1 and SIGUSR2: 10 and 12).
    const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)/m.exec(agentSignals)![1]}`);
    expect(ignored & ((1n << 9n) | (1n << 11n) | (1n << 12n))).toBe((1n << 9n) | (1n << 11n) | (1n << 12n));
    const status = (await run(["cat", "/proc/self/status"])).stdout.toString();
    expect(status.match(/^Sig(Blk|Ign|Cgt):.*$/gm)).toEqual([
      "SigBlk:\t0000000000000000",
      "SigIgn:\t0000000000000000",
      "SigCgt:\t0000000000000000",
    ]);
    // A writer into a closed pipe dies of SIGPIPE, as in any shell.
    const pipe = await run(["bash", "-c", "yes | head -n 1 >/dev/null; echo $PIPESTATUS"]);
    expect(pipe.stdout.toString()).toBe("141\n");
  });

  it("feeds stdin (binary, larger than the pipe buffers)", async () => {
    const input = randomBytes(3 * 1024 * 1024 + 17);
    const r = await run(["cat"], { stdin: input });
    expect(r.stdout.equals(input)).toBe(true);
    expect(r.exit.exitCode).toBe(0);
    const wc = await sh("wc -c", { stdin: Buffer.from("12345") });
    expect(wc.stdout.toString().trim()).toBe("5");
    const none = await run(["cat"]);
    expect(none.stdout.length).toBe(0);
  });

  it("uses exactly the given env (plus the command's marker), cwd, uid and gid", async () => {
    const r = await run(["env"], {
      id: "env-check",
      env: { ...ENV, FOO: "bar baz", EMPTY: "", SANDPIT_COMMAND_ID: "forged" },
    });
    expect(r.stdout.toString().trim().split("\n").sort()).toEqual(
      ["EMPTY=", "FOO=bar baz", `LC_ALL=C`, `PATH=${ENV.PATH}`, "SANDPIT_COMMAND_ID=env-check"].sort(),
    );
    const pwd = await run(["pwd"], { cwd: tmp });
    expect(pwd.stdout.toString()).toBe(`${tmp}\n`);
    if (process.getuid?.() === 0) {
      const id = await sh("id -u; id -g", { uid: 65534, gid: 65533 });
      expect(id.stdout.toString()).toBe("65534\n65533\n");
    }
    const sigs = await sh("grep -E '^Sig(Blk|Ign)' /proc/self/status");
    expect(sigs.stdout.toString()).toBe("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    const pg = await sh("ps -o pid=,pgid= -p $$");
    const [pid, pgid] = pidsOf(pg.stdout);
    expect(pgid).toBe(pid);
  });

  it("looks argv[0] up in the request's PATH", async () => {
    const bin = path.join(tmp, "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, "hello-tool"), '#!/bin/sh\necho tool "$@"\n');
    writeFileSync(path.join(bin, "no-shebang"), "echo plain script\n");
    chmodSync(path.join(bin, "hello-tool"), 0o755);
    chmodSync(path.join(bin, "no-shebang"), 0o755);
    const env = { PATH: `/nonexistent:${bin}:/usr/bin:/bin` };
    expect((await run(["hello-tool", "x"], { env })).stdout.toString()).toBe("tool x\n");
    expect((await run(["no-shebang"], { env })).stdout.toString()).toBe("plain script\n");
    const missing = await run(["hello-tool"], { env: { PATH: "/usr/bin:/bin" } });
    expect(missing.exit.exitCode).toBe(127);
  });

  it("reports a missing binary (127) and a missing cwd (126) with an error frame", async () => {
    const r = await run(["definitely-not-a-command-xyz"]);
    expect(r.events.map((e) => e.type)).toEqual(["started", "error", "exit"]);
    expect(r.events[1]).toMatchObject({
      type: "error",
      code: "not_found",
      message: expect.stringContaining("definitely-not"),
    });
    expect(r.exit.exitCode).toBe(127);
    const abs = await run(["/no/such/binary"]);
    expect(abs.exit.exitCode).toBe(127);
    const cwd = await run(["true"], { cwd: "/no/such/dir" });
    expect(cwd.events[1]).toMatchObject({ type: "error", code: "not_found", message: expect.stringContaining("cwd") });
    expect(cwd.exit.exitCode).toBe(126);
  });

  it("kills the whole process tree on timeout, including setsid children", async () => {
    const t0 = Date.now();
    const r = await sh("sleep 100 & echo $!; sleep 100 & echo $!; setsid sleep 100 & echo $!; wait", {
      timeoutMs: 700,
    });
    const elapsed = Date.now() - t0;
    const pids = pidsOf(r.stdout);
    expect(pids).toHaveLength(3);
    expect(r.exit).toMatchObject({ timedOut: true, signal: 9, exitCode: 137 });
    expect(elapsed).toBeLessThan(3000);
    expect(await waitDead([r.pid, ...pids])).toEqual([]);
  });

  it("kills a grandchild that made itself a session leader via its ppid chain", async () => {
    // sh -> sh -> (setsid) sleep: the sleep is in another session and process group than the command
    const r = await sh("sh -c 'setsid sleep 100 & echo $!; wait' & wait", { timeoutMs: 500 });
    const pids = pidsOf(r.stdout);
    expect(pids).toHaveLength(1);
    expect(r.exit.timedOut).toBe(true);
    expect(await waitDead(pids)).toEqual([]);
  });

  it("caps output: the rest is discarded, truncated is reported and agent memory stays small", async () => {
    const r = await sh("yes | head -c 50000000; echo done >&2", { maxOutputBytes: 100_000 });
    expect(r.stdout.length + r.stderr.length).toBe(100_000);
    expect(r.exit).toMatchObject({ exitCode: 0, truncated: true });
    console.log(
      `agent memory after a 50 MB capped command: VmRSS ${agentStatus("VmRSS")} kB, VmHWM ${agentStatus("VmHWM")} kB`,
    );
    expect(agentStatus("VmHWM")).toBeLessThan(8 * 1024);
    expect(agentStatus("VmRSS")).toBeLessThan(4 * 1024);
  });

  it("finishes ~100 ms after the main process exits even when a child holds stdout", async () => {
    const t0 = Date.now();
    const r = await sh("sleep 30 & echo $!; echo main done");
    const elapsed = Date.now() - t0;
    expect(r.exit.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain("main done");
    expect(elapsed).toBeLessThan(1500);
    const [bg] = pidsOf(r.stdout);
    if (bg !== undefined && alive(bg)) process.kill(bg, "SIGKILL");
  });

  it("kills the command when the client aborts", async () => {
    const ac = new AbortController();
    const pids: number[] = [];
    const events = client.exec(req(["sh", "-c", "echo $$; sleep 100 & echo $!; wait"]), { signal: ac.signal });
    const consumed = (async () => {
      for await (const e of events) {
        if (e.type === "stdout") {
          pids.push(...pidsOf(e.data));
          if (pids.length >= 2) ac.abort();
        }
      }
    })();
    await expect(consumed).rejects.toMatchObject({ name: "AbortError" });
    expect(pids).toHaveLength(2);
    expect(await waitDead(pids)).toEqual([]);
  });

  it("kills the command when the consumer stops iterating", async () => {
    const pids: number[] = [];
    for await (const e of client.exec(req(["sh", "-c", "echo $$; sleep 100 & echo $!; wait"]))) {
      if (e.type === "stdout") pids.push(...pidsOf(e.data));
      if (pids.length >= 2) break;
    }
    expect(await waitDead(pids)).toEqual([]);
    // the client stays usable
    expect((await run(["true"])).exit.exitCode).toBe(0);
  });

  it("rejects a duplicate command id with 409", async () => {
    const id = `dup${++seq}`;
    const first = client.exec({ ...req(["sleep", "0.5"]), id });
    const it1 = first[Symbol.asyncIterator]();
    await it1.next(); // started
    await expectAgentError(collect(client.exec({ ...req(["true"]), id })), 409, "exists");
    while (!(await it1.next()).done) {
      /* drain */
    }
  });

  it("runs many commands concurrently with the right exit statuses", async () => {
    const runs = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        i % 3 === 0 ? run([`missing-binary-${i}`]) : sh(`echo ${i}; exit ${i % 256}`),
      ),
    );
    runs.forEach((r, i) => {
      if (i % 3 === 0) {
        expect(r.exit.exitCode).toBe(127);
      } else {
        expect(r.stdout.toString()).toBe(`${i}\n`);
        expect(r.exit.exitCode).toBe(i % 256);
      }
    });
  });

  it("runs many short commands quickly over keep-alive", async () => {
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) expect((await run(["true"])).exit.exitCode).toBe(0);
    const perExec = (performance.now() - t0) / 50;
    console.log(`exec of /bin/true on the host: ${perExec.toFixed(2)} ms per call`);
    expect(perExec).toBeLessThan(100);
  });
});

describe("background commands", () => {
  it("logs frames, follows from an offset, takes stdin, reports status and signals", async () => {
    const id = `bg${++seq}`;
    const started = await client.startBackground({
      ...req(["sh", "-c", 'echo one; echo two >&2; read x; echo "got $x"; sleep 100']),
      id,
      stdinOpen: true,
    });
    expect(started.id).toBe(id);
    expect(started.pid).toBeGreaterThan(1);
    expect(existsSync(path.join(runDir, `${id}.frames`))).toBe(true);

    const status = await client.commandStatus(id);
    expect(status).toMatchObject({
      id,
      pid: started.pid,
      running: true,
      exitCode: null,
      signal: null,
      durationMs: null,
    });
    expect((await client.listCommands()).map((c) => c.id)).toContain(id);

    const followed = collect(client.commandEvents(id, { follow: true }));
    // wait for the first output, then feed stdin
    for (let i = 0; i < 100; i++) {
      const log = readFileSync(path.join(runDir, `${id}.frames`));
      if (log.includes("two")) break;
      await sleep(20);
    }
    await client.writeStdin(id, Buffer.from("hello\n"));
    await client.closeStdin(id);
    for (let i = 0; i < 100; i++) {
      if (readFileSync(path.join(runDir, `${id}.frames`)).includes("got hello")) break;
      await sleep(20);
    }
    await client.signalCommand(id, 15);
    const r = await followed;
    expect(r.pid).toBe(started.pid);
    expect(r.stdout.toString()).toBe("one\ngot hello\n");
    expect(r.stderr.toString()).toBe("two\n");
    expect(r.exit).toMatchObject({ exitCode: 143, signal: 15, timedOut: false });

    const done = await client.commandStatus(id);
    expect(done).toMatchObject({ running: false, exitCode: 143, signal: 15 });
    expect(done.durationMs).toBeGreaterThan(0);

    // from an offset: skip the started frame
    const skip = encodeFrame(FRAME_STARTED, JSON.stringify({ pid: started.pid })).length;
    const fromOffset = await collect(client.commandEvents(id, { offset: skip }));
    const firstOut = encodeFrame(FRAME_STDOUT, "one\n").length;
    // each event carries the log offset just after its frame, to resume from
    expect(fromOffset.events[0]).toEqual({ type: "stdout", data: Buffer.from("one\n"), offset: skip + firstOut });
    expect(fromOffset.stdout.toString()).toBe("one\ngot hello\n");
    // non-follow read of a finished command and follow of a finished command both end
    expect((await collect(client.commandEvents(id))).exit.exitCode).toBe(143);
    expect((await collect(client.commandEvents(id, { follow: true }))).exit.exitCode).toBe(143);
  });

  it("follows output as it is produced and kills the tree with signal 9", async () => {
    const id = `bg${++seq}`;
    await client.startBackground({
      ...req(["sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.1; done; sleep 100 & echo $!; wait"]),
      id,
    });
    const seen: string[] = [];
    let child = 0;
    const ac = new AbortController();
    const iter = client.commandEvents(id, { follow: true, signal: ac.signal });
    for await (const e of iter) {
      if (e.type === "stdout") {
        seen.push(e.data.toString());
        const m = /^(\d+)$/m.exec(seen.join(""));
        if (m) {
          child = Number(m[1]);
          await client.signalCommand(id, 9);
        }
      }
      if (e.type === "exit") {
        expect(e.signal).toBe(9);
        break;
      }
    }
    expect(seen.join("")).toMatch(/^tick1\ntick2\ntick3\n\d+\n$/);
    expect(child).toBeGreaterThan(1);
    expect(await waitDead([child])).toEqual([]);
  });

  it("times out background commands and answers 404 for unknown ids", async () => {
    const id = `bg${++seq}`;
    await client.startBackground({ ...req(["sleep", "100"]), id, timeoutMs: 300 });
    const r = await collect(client.commandEvents(id, { follow: true }));
    expect(r.exit).toMatchObject({ timedOut: true, exitCode: 137 });
    expect(await client.commandStatus(id)).toMatchObject({ running: false, timedOut: true });
    await expectAgentError(client.commandStatus("nope"), 404, "not_found");
    await expectAgentError(client.signalCommand("nope", 15), 404, "not_found");
    await expectAgentError(collect(client.commandEvents("nope")), 404, "not_found");
    await expectAgentError(client.writeStdin("nope", Buffer.from("x")), 404, "not_found");
  });
});

describe("files", () => {
  it("round-trips binary data with mode and mkdirs", async () => {
    const p = path.join(tmp, "files/a/b/bin.dat");
    const data = Buffer.from(Array.from({ length: 256 * 4 }, (_, i) => i % 256));
    expect(await client.writeFile(p, data, { mkdirs: true, mode: 0o600 })).toEqual({ size: data.length });
    const { size, body } = await client.readFile(p);
    expect(size).toBe(data.length);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    const st = await client.stat(p);
    expect(st).toMatchObject({ name: "bin.dat", path: p, type: "file", size: data.length, mode: 0o600 });
    expect(Number.isNaN(Date.parse(st.mtime))).toBe(false);
    // overwriting keeps the mode when none is given
    await client.writeFile(p, Buffer.from("x"));
    expect(await client.stat(p)).toMatchObject({ size: 1, mode: 0o600 });
    // empty file
    await client.writeFile(p, new Uint8Array(0));
    const empty = await client.readFile(p);
    expect(empty.size).toBe(0);
    empty.body.resume();
  });

  it("streams 20 MB both ways (chunked and with a length)", async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const want = createHash("sha256").update(data).digest("hex");
    const chunked = path.join(tmp, "big-chunked.bin");
    const sized = path.join(tmp, "big-sized.bin");
    const source = () =>
      Readable.from(
        (function* () {
          for (let off = 0; off < data.length; off += 100_003) yield data.subarray(off, off + 100_003);
        })(),
      );
    expect(await client.writeFile(chunked, source())).toEqual({ size: data.length });
    expect(await client.writeFile(sized, source(), { size: data.length })).toEqual({ size: data.length });
    for (const p of [chunked, sized]) {
      const { size, body } = await client.readFile(p);
      expect(size).toBe(data.length);
      expect(await sha256(body)).toEqual({ hash: want, size: data.length });
    }
    expect(agentStatus("VmHWM")).toBeLessThan(8 * 1024);
  });

  it("lists, stats symlinks, creates directories, moves and removes", async () => {
    const d = path.join(tmp, "tree");
    await client.mkdir(d);
    await client.writeFile(path.join(d, "b.txt"), Buffer.from("bb"));
    await client.writeFile(path.join(d, "a.txt"), Buffer.from("a"));
    await client.mkdir(path.join(d, "sub/deeper"), { parents: true, mode: 0o700 });
    symlinkSync("a.txt", path.join(d, "link"));
    const list = await client.list(d);
    expect(list.map((e) => [e.name, e.type])).toEqual([
      ["a.txt", "file"],
      ["b.txt", "file"],
      ["link", "symlink"],
      ["sub", "dir"],
    ]);
    expect(list[2]).toMatchObject({ path: path.join(d, "link"), target: "a.txt" });
    expect(await client.stat(path.join(d, "sub/deeper"))).toMatchObject({ type: "dir", mode: 0o700 });
    expect(await client.stat(path.join(d, "link"))).toMatchObject({ type: "symlink", target: "a.txt" });

    // mkdir: exists → 409; with parents on an existing dir → fine
    await expectAgentError(client.mkdir(d), 409, "exists");
    await client.mkdir(d, { parents: true });
    await expectAgentError(client.mkdir(path.join(d, "a.txt"), { parents: true }), 409, "exists");
    await expectAgentError(client.mkdir(path.join(d, "x/y")), 404, "not_found");

    // move
    await client.move(path.join(d, "b.txt"), path.join(d, "sub/c.txt"));
    await expectAgentError(client.stat(path.join(d, "b.txt")), 404, "not_found");
    expect(await client.stat(path.join(d, "sub/c.txt"))).toMatchObject({ size: 2 });
    await expectAgentError(client.move(path.join(d, "nope"), path.join(d, "x")), 404, "not_found");

    // remove
    await expectAgentError(client.remove(path.join(d, "sub")), 409, "not_empty");
    await client.remove(path.join(d, "link"));
    expect(existsSync(path.join(d, "a.txt"))).toBe(true);
    await client.remove(path.join(d, "sub"), { recursive: true });
    await expectAgentError(client.stat(path.join(d, "sub")), 404, "not_found");
    await expectAgentError(client.remove(path.join(d, "sub")), 404, "not_found");
    await client.remove(d, { recursive: true });
    expect(existsSync(d)).toBe(false);
  });

  it("maps errors to codes", async () => {
    const f = path.join(tmp, "plain.txt");
    await client.writeFile(f, Buffer.from("x"));
    await expectAgentError(client.stat(path.join(tmp, "missing")), 404, "not_found");
    await expectAgentError(client.readFile(path.join(tmp, "missing")), 404, "not_found");
    await expectAgentError(client.readFile(tmp), 400, "is_directory");
    await expectAgentError(client.list(f), 400, "not_directory");
    await expectAgentError(client.list(path.join(f, "x")), 400, "not_directory");
    await expectAgentError(client.writeFile(tmp, Buffer.from("x")), 400, "is_directory");
    await expectAgentError(client.writeFile(path.join(tmp, "no/parent/f"), Buffer.from("x")), 404, "not_found");
    await expectAgentError(client.stat("relative/path"), 400, "bad_request");
    await expectAgentError(client.remove("/"), 400, "bad_request");
    // a rejected streamed upload leaves the connection usable
    await expectAgentError(
      client.writeFile(path.join(tmp, "no/parent/g"), Readable.from([Buffer.alloc(300_000)])),
      404,
      "not_found",
    );
    expect((await client.stat(f)).size).toBe(1);
  });

  it("reads procfs files that report size 0", async () => {
    const { size, body } = await client.readFile(`/proc/${agentProc.pid}/status`);
    const text = (await body.toArray()).map((c: Buffer) => c.toString()).join("");
    expect(size).toBe(Buffer.byteLength(text));
    expect(text).toContain("VmRSS");
  });
});
