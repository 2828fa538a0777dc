import net from "node:net";
import { beforeAll, describe, expect, it } from "vitest";
import type { ApiResponse, apiClient, ErrorBody, SandboxBody } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

// Client mistakes answer a clear 4xx in the API's envelope (or the dialect's shape), never 500 `internal`,
// and leave the server and the sandbox working.

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;
useTestServer((s, a) => {
  server = s;
  api = a;
});

beforeAll(async () => {
  sandbox = await api.createSandbox();
});

/** Asserts the native envelope with this status and code; returns the error for further checks. */
function expectError(res: ApiResponse, status: number, code: string) {
  expect({ status: res.status, code: (res.body as ErrorBody).error?.code }).toEqual({ status, code });
  const error = (res.body as ErrorBody).error;
  expect(typeof error.message).toBe("string");
  expect(error.message.length).toBeGreaterThan(0);
  return error;
}

/** Asserts a validation error naming exactly these fields, each with this rule. */
function expectFields(res: ApiResponse, fields: string[], rule: string) {
  const error = expectError(res, 400, "validation_failed");
  expect(error.details?.fields?.map((f) => f.field)).toEqual(fields);
  for (const f of error.details?.fields ?? []) expect(f.rule).toBe(rule);
}

/** The sandbox's agent still answers, and the server still serves. */
async function expectHealthy() {
  const r = await api.exec(sandbox.id, { command: "echo alive" });
  expect(r.stdout).toBe("alive\n");
  expect((await api.get("/v1/sandboxes")).status).toBe(200);
}

/** Sends raw bytes to the server and returns everything it answers before closing. */
function rawRequest(request: Buffer | string): Promise<{ status: number; headers: string; body: string }> {
  const url = new URL(server.url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    // The server may close before the whole request is written (431): its answer is what matters.
    socket.on("error", () => undefined);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const split = text.indexOf("\r\n\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, headers: text.slice(0, split), body: text.slice(split + 4) });
    });
  });
}

describe("exec requests the sandbox cannot run", () => {
  it("rejects NUL in command, args, cwd and env with a 400 naming the field", async () => {
    const exec = (body: Record<string, unknown>) => api.call("POST", `/v1/sandboxes/${sandbox.id}/exec`, body);
    expectFields(await exec({ command: "echo a\0b" }), ["command"], "no_nul");
    expectFields(await exec({ args: ["echo", "a\0b"] }), ["args.1"], "no_nul");
    expectFields(await exec({ command: "pwd", cwd: "/tmp\0/x" }), ["cwd"], "no_nul");
    expectFields(await exec({ command: "true", env: { X: "a\0b" } }), ["env.X"], "no_nul");
    expectFields(await exec({ command: "true", background: true, env: { Y: "\0" } }), ["env.Y"], "no_nul");
    await expectHealthy();
  });

  it("takes a uid up to 4294967294 and rejects (uid_t)-1 and beyond", async () => {
    const exec = (user: string) => api.call("POST", `/v1/sandboxes/${sandbox.id}/exec`, { command: "id -u", user });
    expectFields(await exec("4294967295"), ["user"], "uid_range");
    expectFields(await exec("9999999999"), ["user"], "uid_range");
    const highest = await exec("4294967294");
    expect(highest.status).toBe(200);
    expect((highest.body as { stdout: string }).stdout).toBe("4294967294\n");
    // The same rule at create (the sandbox's default user) and for terminals.
    expectFields(await api.call("POST", "/v1/sandboxes", { user: "4294967295" }), ["user"], "uid_range");
    expectFields(
      await api.call("POST", `/v1/sandboxes/${sandbox.id}/terminals`, { user: "4294967295" }),
      ["user"],
      "uid_range",
    );
    await expectHealthy();
  });

  it("rejects NUL in an entrypoint and in metadata keys and values instead of storing U+FFFD", async () => {
    expectFields(await api.call("POST", "/v1/sandboxes", { entrypoint: ["sleep", "1\0"] }), ["entrypoint.1"], "no_nul");
    expectFields(await api.call("POST", "/v1/sandboxes", { metadata: { k: "a\0b" } }), ["metadata.k"], "no_nul");
    const badKey = await api.call("PATCH", `/v1/sandboxes/${sandbox.id}`, { metadata: { "a\0b": "v" } });
    expectFields(badKey, ["metadata.a\0b"], "no_nul");
    expect((badKey.body as unknown as ErrorBody).error.message).toMatch(/must not contain NUL/);
    expectFields(
      await api.call("PATCH", `/v1/sandboxes/${sandbox.id}`, { metadata: { k: "x\0y" } }),
      ["metadata.k"],
      "no_nul",
    );
    expect((await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`)).body.metadata).toEqual({});
  });

  it("answers logs of a foreground command with a 409 saying only background commands keep logs", async () => {
    const fg = await api.exec(sandbox.id, { command: "echo hi" });
    const res = await api.get(`/v1/sandboxes/${sandbox.id}/commands/${fg.commandId}/logs`);
    const error = expectError(res, 409, "conflict");
    expect(error.message).toMatch(/foreground/);
    // The command itself exists.
    expect((await api.get(`/v1/sandboxes/${sandbox.id}/commands/${fg.commandId}`)).status).toBe(200);
    await expectHealthy();
  });
});

describe("file requests on what is not a regular file", () => {
  beforeAll(async () => {
    const made = await api.exec(sandbox.id, {
      command:
        "mkfifo /tmp/fifo && (python3 -c 'import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(\"/tmp/sock\"); time.sleep(600)' >/dev/null 2>&1 &) ; " +
        "for i in $(seq 100); do [ -S /tmp/sock ] && exit 0; sleep 0.1; done; exit 1",
    });
    expect(made.exitCode).toBe(0);
  });

  it.each([
    ["a fifo without a writer", "/tmp/fifo", "fifo"],
    ["/dev/zero", "/dev/zero", "character device"],
    ["a unix socket", "/tmp/sock", "socket"],
  ])("answers a read of %s with a 400 that says why", async (_what, path, kind) => {
    const res = await api.get(`/v1/sandboxes/${sandbox.id}/files?path=${encodeURIComponent(path)}`);
    const error = expectError(res, 400, "bad_request");
    expect(error.message).toContain(path);
    expect(error.message).toContain(`not a regular file (a ${kind})`);
    await expectHealthy();
  });

  it.each(["/", "/.", "/tmp/..", "//"])("refuses to delete the root directory given as %s", async (path) => {
    const res = await api.del(`/v1/sandboxes/${sandbox.id}/files?path=${encodeURIComponent(path)}&recursive=true`);
    expect(expectError(res, 400, "bad_request").message).toMatch(/root directory/);
    expect((await api.exec(sandbox.id, { command: "test -f /etc/passwd && test -d /tmp" })).exitCode).toBe(0);
    await expectHealthy();
  });

  it("answers the removal of a mount point with a 409, not internal", async () => {
    const res = await api.del(`/v1/sandboxes/${sandbox.id}/files?path=/dev/shm&recursive=true`);
    expect(expectError(res, 409, "conflict").message).toMatch(/mount point/);
    await expectHealthy();
  });

  it("answers the same through the dialects' file and exec APIs, in their shapes", async () => {
    const auth = { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" };
    const vercel = async (path: string, body: unknown) => {
      const res = await fetch(`${server.url}/vercel/v1/sandboxes/${sandbox.id}${path}`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { error: { code: string; message: string } } };
    };
    const read = await vercel("/fs/read", { path: "/tmp/fifo" });
    expect(read.status).toBe(400);
    expect(read.body.error.message).toContain("not a regular file (a fifo)");
    const cmd = await vercel("/cmd", { command: "echo", args: ["a\0b"], wait: true });
    expect(cmd.status).toBe(400);
    expect(cmd.body.error.message).toMatch(/args\.0: must not contain NUL/);

    const zwrmExec = await fetch(`${server.url}/zwrm/v1/sandboxes/${sandbox.id}/exec`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ command: "echo a\0b" }),
    });
    expect(zwrmExec.status).toBe(400);
    expect(await zwrmExec.json()).toMatchObject({ code: "invalid_request", error: expect.stringMatching(/NUL/) });
    const zwrmRead = await fetch(`${server.url}/zwrm/v1/sandboxes/${sandbox.id}/download?path=/dev/zero`, {
      headers: auth,
    });
    expect(zwrmRead.status).toBe(400);
    expect(await zwrmRead.json()).toMatchObject({ error: expect.stringContaining("not a regular file") });
    await expectHealthy();
  });
});

describe("requests refused before routing", () => {
  it("answers a URL longer than the header limit with 431 in the envelope", async () => {
    const res = await rawRequest(`GET /v1/sandboxes?x=${"a".repeat(64 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(res.status).toBe(431);
    expect(res.headers).toMatch(/content-type: application\/json/i);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: "headers_too_large", message: expect.any(String) } });
  });

  it("answers raw non-ASCII bytes in the query with 400 in the envelope", async () => {
    const res = await rawRequest(
      Buffer.concat([
        Buffer.from("GET /v1/sandboxes?name="),
        Buffer.from([0xc3, 0xa9]),
        Buffer.from(" HTTP/1.1\r\nHost: x\r\n\r\n"),
      ]),
    );
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({
      error: { code: "bad_request", message: expect.stringMatching(/percent-encoded/) },
    });
  });

  it("answers a path whose percent-encoding is not UTF-8 with 400 in the envelope, or the dialect's shape", async () => {
    const res = await api.get(`/v1/sandboxes/%E0%A4%A`);
    expectError(res, 400, "bad_request");
    const zwrm = await api.get(`/zwrm/v1/sandboxes/%E0%A4%A`);
    expect(zwrm.status).toBe(400);
    expect(zwrm.body).toEqual({ code: "invalid_request", error: expect.stringMatching(/Malformed URL/) });
  });

  it("answers a path segment longer than the router takes with 414 in the envelope", async () => {
    expectError(await api.get(`/v1/sandboxes/${"a".repeat(200)}`), 414, "uri_too_long");
  });

  it("answers a request line that is not HTTP with 400 in the envelope", async () => {
    const res = await rawRequest("NOT HTTP AT ALL\r\n\r\n");
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: "bad_request", message: expect.any(String) } });
    await expectHealthy();
  });
});

describe("WebSocket upgrades the client abandons", () => {
  it("survives a client that resets the connection of a refused upgrade (the Daytona SDK's socket.io does)", async () => {
    const url = new URL(server.url);
    // Each client waits for the 404 and then resets instead of closing: the server's socket, half-closed
    // after its answer, reads ECONNRESET.
    const resetAfterAnswer = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(url.port), url.hostname, () =>
          socket.write(
            `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
          ),
        );
        socket.once("data", (c: Buffer) => {
          socket.resetAndDestroy();
          resolve(c.toString("latin1").split("\r\n")[0] ?? "");
        });
        socket.on("error", reject);
      });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => resetAfterAnswer(i % 2 ? "/daytona/api/socket.io/?EIO=4" : "/nope")),
    );
    for (const line of answers) expect(line).toMatch(/^HTTP\/1\.1 404/);
    await new Promise((r) => setTimeout(r, 200));
    await expectHealthy();
  });
});

describe("Content-Type: application/json with an empty body", () => {
  it("is accepted on routes without a body, and a route that needs one names the missing body", async () => {
    const json = { "content-type": "application/json" };
    const noBody = await api.call("POST", `/v1/sandboxes/${sandbox.id}/exec`, undefined, json);
    expectFields(noBody, ["(body)"], "required");
    const other = await api.createSandbox();
    const destroyed = await api.call("DELETE", `/v1/sandboxes/${other.id}`, undefined, json);
    expect(destroyed.status).toBe(204);
    // A malformed body still is one.
    const malformed = await api.call("POST", `/v1/sandboxes/${sandbox.id}/exec`, "{", json);
    expectError(malformed, 400, "bad_request");
    await expectHealthy();
  });
});
