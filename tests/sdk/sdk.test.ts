// The SDK against a real server and real gVisor sandboxes: one sandbox for the whole file.
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  AuthenticationError,
  type CommandResult,
  ConflictError,
  type ConnectionOptions,
  FileNotFoundError,
  Sandbox,
  SandboxNotFoundError,
  ValidationError,
} from "sandpit";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestServer } from "../helpers/server.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

let server: TestServer;
let connection: ConnectionOptions;
let sandbox: Sandbox;

beforeAll(async () => {
  server = await startTestServer();
  connection = { apiUrl: server.url, apiKey: server.apiKey };
  sandbox = await Sandbox.create(
    { metadata: { suite: "sdk" }, env: { GREETING: "hi" }, timeoutMs: 600_000 },
    connection,
  );
});

afterAll(async () => {
  await sandbox?.kill().catch(() => undefined);
  await server?.close();
});

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

describe("sandboxes", () => {
  it("creates a running sandbox that get and list find", async () => {
    expect(sandbox.id).toMatch(/^sbx_[a-z2-7]{20}$/);
    expect(sandbox.status).toBe("running");
    expect(sandbox.metadata).toEqual({ suite: "sdk" });
    expect(sandbox.envKeys).toContain("GREETING");
    expect(JSON.parse(JSON.stringify(sandbox))).toMatchObject({ id: sandbox.id, status: "running" });

    const fetched = await Sandbox.get(sandbox.id, connection);
    expect(fetched.id).toBe(sandbox.id);
    const listed = await Sandbox.list({ status: "running", metadata: { suite: "sdk" } }, connection);
    expect(listed.map((s) => s.id)).toEqual([sandbox.id]);
    expect(await Sandbox.list({ metadata: { suite: "other" } }, connection)).toEqual([]);
  });
});

describe("commands", () => {
  it("streams output to the callbacks while the command runs", async () => {
    const seen: { stream: "stdout" | "stderr"; data: string; at: number }[] = [];
    const result = await sandbox.commands.run("echo one; sleep 1; echo two >&2; echo three", {
      onStdout: (data) => seen.push({ stream: "stdout", data, at: Date.now() }),
      onStderr: (data) => seen.push({ stream: "stderr", data, at: Date.now() }),
    });
    const finishedAt = Date.now();
    expect(result).toMatchObject({ exitCode: 0, stdout: "one\nthree\n", stderr: "two\n", timedOut: false });
    expect(result.commandId).not.toBe("");
    // "one" reached the callback about a second before the command finished: it was streamed, not buffered.
    const first = seen.find((s) => s.data.includes("one"));
    expect(first).toBeDefined();
    expect(finishedAt - first!.at).toBeGreaterThan(600);
    expect(
      seen
        .filter((s) => s.stream === "stderr")
        .map((s) => s.data)
        .join(""),
    ).toBe("two\n");
    expect((await sandbox.commands.get(result.commandId)).commandId).toBe(result.commandId);
  });

  it("returns non-zero exit codes, runs argv without a shell, and passes cwd, env and stdin", async () => {
    expect((await sandbox.commands.run(["sh", "-c", "exit 3"])).exitCode).toBe(3);
    const argv = await sandbox.commands.run(["echo", "$GREETING", "a b"]);
    expect(argv.stdout).toBe("$GREETING a b\n");
    const env = await sandbox.commands.run("pwd; echo $GREETING $EXTRA", { cwd: "/tmp", env: { EXTRA: "there" } });
    expect(env.stdout).toBe("/tmp\nhi there\n");
    const stdin = await sandbox.commands.run("tr a-z A-Z", { stdin: "piped in" });
    expect(stdin.stdout).toBe("PIPED IN");
  });

  it("reports a command that ran past its timeout", async () => {
    const result = await sandbox.commands.run("sleep 30", { timeoutMs: 500 });
    expect(result.timedOut).toBe(true);
    expect(result.durationMs).toBeLessThan(10_000);
  });

  it("runs background commands: wait, logs from the start, live callbacks, kill", async () => {
    const live: string[] = [];
    const ticker = await sandbox.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done", {
      background: true,
      onStdout: (data) => live.push(data),
    });
    expect(ticker.commandId).not.toBe("");
    const result: CommandResult = await ticker.wait();
    expect(result).toMatchObject({ exitCode: 0, stdout: "tick 1\ntick 2\ntick 3\n" });
    expect(live.join("")).toBe("tick 1\ntick 2\ntick 3\n");

    const events: string[] = [];
    let replayed = "";
    for await (const event of ticker.logs()) {
      events.push(event.type);
      if (event.type === "stdout") replayed += event.data;
    }
    expect(events[0]).toBe("start");
    expect(events.at(-1)).toBe("exit");
    expect(replayed).toBe("tick 1\ntick 2\ntick 3\n");

    const sleeper = await sandbox.commands.run(["sleep", "60"], { background: true });
    expect((await sleeper.info()).status).toBe("running");
    const started = Date.now();
    await sleeper.kill();
    const killed = await sleeper.wait();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(killed.exitCode).not.toBe(0);
    expect((await sleeper.info()).status).not.toBe("running");

    const ids = (await sandbox.commands.list()).map((c) => c.commandId);
    expect(ids).toEqual(expect.arrayContaining([ticker.commandId, sleeper.commandId]));
  });
});

describe("files", () => {
  it("round-trips text, bytes and a 5 MB stream", async () => {
    await sandbox.files.write("/tmp/sdk/hello.txt", "héllo wörld\n");
    expect(await sandbox.files.read("/tmp/sdk/hello.txt")).toBe("héllo wörld\n");

    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect((await sandbox.files.write("/tmp/sdk/bytes.bin", bytes)).size).toBe(256);
    expect(await sandbox.files.read("/tmp/sdk/bytes.bin", { format: "bytes" })).toEqual(bytes);

    const big = randomBytes(5 * 1024 * 1024);
    const chunks = Array.from({ length: 20 }, (_, i) => big.subarray(i * 262_144, (i + 1) * 262_144));
    const written = await sandbox.files.write("/tmp/sdk/big.bin", Readable.from(chunks));
    expect(written.size).toBe(big.length);
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of (await sandbox.files.read("/tmp/sdk/big.bin", {
      format: "stream",
    })) as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
    }
    expect(size).toBe(big.length);
    expect(hash.digest("hex")).toBe(sha256(big));
    const inside = await sandbox.commands.run("sha256sum /tmp/sdk/big.bin");
    expect(inside.stdout.split(" ")[0]).toBe(sha256(big));
  });

  it("lists, creates directories and removes", async () => {
    await sandbox.files.mkdir("/tmp/tree/sub/deeper");
    await sandbox.files.write("/tmp/tree/run.sh", "#!/bin/sh\necho ran\n", { mode: "755" });
    await sandbox.files.write("/tmp/tree/sub/data.txt", "data");

    const entries = await sandbox.files.list("/tmp/tree");
    const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
    expect(Object.keys(byName).sort()).toEqual(["run.sh", "sub"]);
    expect(byName["sub"]?.type).toBe("dir");
    expect(byName["run.sh"]).toMatchObject({ type: "file", size: 19 });
    expect(byName["run.sh"]?.mode).toMatch(/755$/);
    expect((await sandbox.commands.run("/tmp/tree/run.sh")).stdout).toBe("ran\n");

    await sandbox.files.remove("/tmp/tree/sub/data.txt");
    await expect(sandbox.files.read("/tmp/tree/sub/data.txt")).rejects.toBeInstanceOf(FileNotFoundError);
    await sandbox.files.remove("/tmp/tree", { recursive: true });
    expect((await sandbox.files.list("/tmp")).map((e) => e.name)).not.toContain("tree");
  });
});

describe("file watch", () => {
  it("calls back for changes made after it resolved, until stopped", async () => {
    await sandbox.commands.run("mkdir -p /sdk-watch");
    const events: { type: string; path: string }[] = [];
    const watch = await sandbox.files.watch("/sdk-watch", (e) => events.push(e));
    await sandbox.files.write("/sdk-watch/new.txt", "x");
    await vi.waitFor(() => expect(events).toContainEqual(expect.objectContaining({ path: "/sdk-watch/new.txt" })), {
      timeout: 10_000,
    });
    watch.stop();
    await watch.done;
  });
});

describe("terminals", () => {
  it("runs a program on a terminal: input, output, resize and the exit code", async () => {
    let output = "";
    const term = await sandbox.terminals.create({
      cols: 90,
      rows: 20,
      onData: (d) => (output += Buffer.from(d).toString()),
    });
    term.write("stty size\r");
    await vi.waitFor(() => expect(output).toMatch(/20 90/), { timeout: 10_000 });
    term.resize(100, 25);
    await new Promise((r) => setTimeout(r, 300));
    term.write("stty size; exit 7\r");
    expect(await term.wait()).toBe(7);
    expect(output).toMatch(/25 100/);
  });
});

describe("errors", () => {
  it("names the invalid field of a request", async () => {
    const error = await Sandbox.create({ resources: { vcpus: 99 } }, connection).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ValidationError);
    const validation = error as ValidationError;
    expect(validation.status).toBe(400);
    expect(validation.code).toBe("validation_failed");
    expect(validation.requestId).toBeTruthy();
    expect(validation.fields.map((f) => f.field)).toContain("resources.vcpus");
  });

  it("throws SandboxNotFoundError for an unknown sandbox", async () => {
    await expect(Sandbox.get(`sbx_${"a".repeat(20)}`, connection)).rejects.toBeInstanceOf(SandboxNotFoundError);
  });

  it("throws AuthenticationError for a wrong key", async () => {
    const error = await Sandbox.list({}, { apiUrl: server.url, apiKey: "sp_wrong" }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).status).toBe(401);
  });
});

describe("lifetime", () => {
  it("moves the expiry with setTimeout", async () => {
    const before = Date.now();
    await sandbox.setTimeout(20 * 60_000);
    const expires = Date.parse(sandbox.expiresAt ?? "");
    expect(expires).toBeGreaterThanOrEqual(before + 20 * 60_000 - 5_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 20 * 60_000 + 5_000);
    expect((await sandbox.refresh()).expiresAt).toBe(sandbox.expiresAt);
  });

  it("kills the sandbox, after which it refuses commands", async () => {
    await sandbox.kill();
    await sandbox.kill();
    await sandbox.refresh();
    expect(["destroying", "destroyed"]).toContain(sandbox.status);
    expect(await Sandbox.list({ status: "running", metadata: { suite: "sdk" } }, connection)).toEqual([]);
    await expect(sandbox.commands.run("true")).rejects.toBeInstanceOf(ConflictError);
  });
});
