import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;

beforeAll(async () => {
  server = await startTestServer();
  api = apiClient(server);
  sandbox = await api.createSandbox({ env: { FROM_SANDBOX: "yes" } });
});

afterAll(async () => {
  await server?.close();
});

async function ndjson(path: string, body: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: {
      authorization: `Bearer ${server.apiKey}`,
      accept: "application/x-ndjson",
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return res;
}

async function readLines(res: Response, onLine?: (line: Record<string, unknown>, at: number) => void) {
  const lines: Record<string, unknown>[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let i = buffer.indexOf("\n");
    while (i >= 0) {
      const line = JSON.parse(buffer.slice(0, i)) as Record<string, unknown>;
      lines.push(line);
      onLine?.(line, Date.now());
      buffer = buffer.slice(i + 1);
      i = buffer.indexOf("\n");
    }
  }
  return lines;
}

describe("exec", () => {
  it("runs a shell command and returns output and exit code", async () => {
    const r = await api.exec(sandbox.id, { command: "echo out; echo err >&2; exit 7" });
    expect(r).toMatchObject({ exitCode: 7, stdout: "out\n", stderr: "err\n", timedOut: false, truncated: false });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
    expect(r.commandId).toMatch(/^cmd_/);
  });

  it("runs argv without a shell, with env, cwd and stdin", async () => {
    const r = await api.exec(sandbox.id, {
      args: ["/bin/sh", "-c", 'read line; echo "$line|$X|$FROM_SANDBOX|$(pwd)"', "ignored"],
      env: { X: "from-request" },
      cwd: "/tmp",
      stdin: "typed input\n",
    });
    expect(r.stdout).toBe("typed input|from-request|yes|/tmp\n");
    const literal = await api.exec(sandbox.id, { args: ["echo", "$HOME", "a b"] });
    expect(literal.stdout).toBe("$HOME a b\n");
  });

  it("reports a missing program as exit 127 and a missing cwd as an error", async () => {
    const r = await api.exec(sandbox.id, { args: ["/no/such/program"] });
    expect(r.exitCode).toBe(127);
    const cwd = await api.exec(sandbox.id, { command: "true", cwd: "/no/such/dir" });
    expect(cwd.exitCode).not.toBe(0);
    expect(cwd.stderr).toMatch(/no\/such\/dir/);
  });

  it("streams output as NDJSON while the command runs", async () => {
    const res = await ndjson(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "echo first; sleep 1; echo second >&2; exit 3",
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const times: Record<string, number> = {};
    const lines = await readLines(res, (line, at) => {
      if (line.type === "stdout" || line.type === "stderr" || line.type === "exit") times[line.type as string] = at;
    });
    expect(lines[0]).toMatchObject({ type: "start" });
    expect(lines).toContainEqual({ type: "stdout", data: "first\n" });
    expect(lines).toContainEqual({ type: "stderr", data: "second\n" });
    expect(lines.at(-1)).toMatchObject({ type: "exit", exitCode: 3, timedOut: false });
    // The first line arrived about a second before the end: it was streamed, not buffered.
    expect(times.exit! - times.stdout!).toBeGreaterThan(700);
  });

  it("kills the whole process tree on timeout", async () => {
    const r = await api.exec(sandbox.id, {
      command: "sleep 300 & (setsid sleep 301 &); sh -c 'sleep 302' & echo started; wait",
      timeoutMs: 1500,
    });
    expect(r.timedOut).toBe(true);
    expect(r.stdout).toBe("started\n");
    const ps = await api.exec(sandbox.id, { command: "ps -eo args | grep -E '^sleep 30[0-2]' || true" });
    expect(ps.stdout).toBe("");
  });

  it("caps huge output with a flag instead of running out of memory", async () => {
    const r = await api.exec(sandbox.id, { command: "head -c 200000000 /dev/zero | tr '\\0' 'a'; echo done >&2" });
    expect(r.truncated).toBe(true);
    expect(r.stdout.length).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(r.stdout.length).toBeGreaterThan(1024 * 1024);
    expect(r.exitCode).toBe(0);
  });

  it("feeds stdin to a background command while it runs, then closes it", async () => {
    const started = await api.post<{ commandId: string }>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "while read line; do echo got:$line; done; echo eof",
      background: true,
      stdinOpen: true,
      stdin: "first\n",
    });
    expect(started.status).toBe(200);
    const path = `/v1/sandboxes/${sandbox.id}/commands/${started.body.commandId}`;
    expect((await api.post(`${path}/stdin`, { data: "second\n" })).status).toBe(204);
    expect(
      (await api.post(`${path}/stdin`, { dataBase64: Buffer.from("third\n").toString("base64"), close: true })).status,
    ).toBe(204);
    const logs = await readLines(await ndjson(`${path}/logs`, undefined));
    const out = logs
      .filter((l) => l.type === "stdout")
      .map((l) => l.data)
      .join("");
    expect(out).toBe("got:first\ngot:second\ngot:third\neof\n");
    expect(logs.at(-1)).toMatchObject({ type: "exit", exitCode: 0 });
    // Ended: no more input; a command without stdinOpen has none to begin with.
    expect((await api.post<ErrorBody>(`${path}/stdin`, { data: "late" })).status).toBe(409);
    const closed = await api.post<{ commandId: string }>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "sleep 5",
      background: true,
    });
    const refused = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/commands/${closed.body.commandId}/stdin`, {
      data: "x",
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toMatch(/stdinOpen/);
    const invalid = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/exec`, { command: "cat", stdinOpen: true });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.details?.fields?.[0]?.field).toBe("stdinOpen");
  });

  it("runs background commands: status, logs from the start, kill", async () => {
    const started = await api.post<{ commandId: string; pid: number }>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "for i in 1 2 3; do echo tick $i; sleep 0.3; done; exit 4",
      background: true,
    });
    expect(started.status).toBe(200);
    const { commandId } = started.body;
    const running = await api.get<{ status: string }>(`/v1/sandboxes/${sandbox.id}/commands/${commandId}`);
    expect(running.body.status).toBe("running");
    const logs = await readLines(await ndjson(`/v1/sandboxes/${sandbox.id}/commands/${commandId}/logs`, undefined));
    const out = logs
      .filter((l) => l.type === "stdout")
      .map((l) => l.data)
      .join("");
    expect(out).toBe("tick 1\ntick 2\ntick 3\n");
    expect(logs.at(-1)).toMatchObject({ type: "exit", exitCode: 4 });
    const done = await api.get<{ status: string; exitCode: number }>(
      `/v1/sandboxes/${sandbox.id}/commands/${commandId}`,
    );
    expect(done.body).toMatchObject({ status: "exited", exitCode: 4 });
    // Logs stay readable after the command ended.
    const again = await readLines(await ndjson(`/v1/sandboxes/${sandbox.id}/commands/${commandId}/logs`, undefined));
    expect(again.filter((l) => l.type === "stdout").length).toBeGreaterThan(0);

    const sleeper = await api.post<{ commandId: string }>(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: "sleep 600",
      background: true,
    });
    const kill = await api.post(`/v1/sandboxes/${sandbox.id}/commands/${sleeper.body.commandId}/kill`, {
      signal: "SIGTERM",
    });
    expect(kill.status).toBe(204);
    const killed = await waitFor(async () => {
      const c = await api.get<{ status: string; exitCode: number }>(
        `/v1/sandboxes/${sandbox.id}/commands/${sleeper.body.commandId}`,
      );
      return c.body.status !== "running" ? c.body : undefined;
    });
    expect(killed).toMatchObject({ status: "killed", exitCode: 143 });
    const list = await api.get<{ commands: { commandId: string }[] }>(`/v1/sandboxes/${sandbox.id}/commands`);
    expect(list.body.commands.map((c) => c.commandId)).toEqual(
      expect.arrayContaining([commandId, sleeper.body.commandId]),
    );
    expect((await api.get<ErrorBody>(`/v1/sandboxes/${sandbox.id}/commands/cmd_nope`)).status).toBe(404);
  });

  it("kills a foreground command when the client disconnects", async () => {
    const controller = new AbortController();
    const res = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/exec`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${server.apiKey}`,
        accept: "application/x-ndjson",
        "content-type": "application/json",
      },
      body: JSON.stringify({ command: "echo go; sleep 444" }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await waitFor(
      async () => {
        const ps = await api.exec(sandbox.id, { command: "ps -eo args | grep -c '^sleep 444' || true" });
        return ps.stdout.trim() === "0" ? true : undefined;
      },
      10_000,
      "the command to be killed",
    );
  });

  it("restarts the agent when a user kills it, and keeps the agent closed to the sandbox itself", async () => {
    const before = await api.exec(sandbox.id, {
      command: "ps -eo pid,args | awk '$2 ~ /sandpit-agent/ && $1 != 1 {print $1}'",
    });
    const serverPid = before.stdout.trim();
    expect(serverPid).toMatch(/^\d+$/);
    await api.post(`/v1/sandboxes/${sandbox.id}/exec`, {
      command: `sleep 0.2; kill -9 ${serverPid}`,
      background: true,
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = await api.exec(sandbox.id, {
      command: "ps -eo pid,args | awk '$2 ~ /sandpit-agent/ && $1 != 1 {print $1}'",
    });
    expect(after.stdout.trim()).toMatch(/^\d+$/);
    expect(after.stdout.trim()).not.toBe(serverPid);
    expect((await api.exec(sandbox.id, { command: "echo ok" })).stdout).toBe("ok\n");
    // Code in the sandbox cannot drive the agent: it only accepts the host end of the veth.
    const probe = await api.exec(sandbox.id, {
      command:
        'ip=$(ip -4 -o addr show | awk \'$2 != "lo" {sub(/\\/.*/, "", $4); print $4}\'); ' +
        "curl -s -m 3 -o /dev/null -w '%{http_code}' http://$ip:49982/health; echo \" rc=$?\"; " +
        "curl -s -m 3 -o /dev/null -w '%{http_code}' http://127.0.0.1:49982/health; echo \" rc=$?\"",
    });
    expect(probe.stdout).not.toMatch(/^200/m);
    expect(probe.stdout).not.toContain("200 rc=0");
  });
});
