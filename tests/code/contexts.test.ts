// Code contexts through the native API: live interpreters (Python kernel, node, bash) in a real sandbox of
// the code-interpreter template, served by the in-sandbox code server (packages/agent/code).
import type { CodeContext, CodeEvent, CodeExecution } from "@sandpit/contract";
import { beforeAll, describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
let sandbox: SandboxBody;

useTestServer((s, a) => {
  server = s;
  api = a;
});

beforeAll(async () => {
  sandbox = await api.createSandbox({ template: "code-interpreter", timeoutMs: 900_000 });
});

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function run(body: Record<string, unknown>, sandboxId = sandbox.id): Promise<CodeExecution> {
  const res = await api.post<CodeExecution | ErrorBody>(`/v1/sandboxes/${sandboxId}/code/run`, body);
  if (res.status !== 200) throw new Error(`run failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as CodeExecution;
}

/** The text/plain of a cell's main result. */
function value(execution: CodeExecution): unknown {
  return execution.results.find((r) => r.isMainResult)?.data["text/plain"];
}

async function createContext(body: Record<string, unknown>): Promise<CodeContext> {
  const res = await api.post<CodeContext>(`/v1/sandboxes/${sandbox.id}/code/contexts`, body);
  expect(res.status).toBe(201);
  return res.body;
}

/** A cell's events as they arrive (Accept: application/x-ndjson); `onEvent` sees each one first. */
async function stream(
  body: Record<string, unknown>,
  onEvent: (event: CodeEvent) => void | Promise<void>,
  signal?: AbortSignal,
): Promise<CodeEvent[]> {
  const res = await fetch(`${server.url}/v1/sandboxes/${sandbox.id}/code/run`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${server.apiKey}`,
      "content-type": "application/json",
      accept: "application/x-ndjson",
    },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("application/x-ndjson");
  const events: CodeEvent[] = [];
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() === "") continue;
      const event = JSON.parse(line) as CodeEvent;
      events.push(event);
      await onEvent(event);
    }
  }
  return events;
}

describe("a code-interpreter sandbox", () => {
  it("starts its default Python kernel as soon as it exists, before any cell asks", async () => {
    // No cell has run yet: only the template's warm contexts can have made the default python context.
    const contexts = async () =>
      (await api.get<{ contexts: CodeContext[] }>(`/v1/sandboxes/${sandbox.id}/code/contexts`)).body.contexts;
    const warm = await waitFor(
      async () => (await contexts()).find((c) => c.id === "default-python"),
      60_000,
      "the warm Python context to be ready",
    );
    expect(warm).toMatchObject({ language: "python", isDefault: true });
    const kernels = await api.exec(sandbox.id, { command: "pgrep -f '[i]pykernel_launcher' | wc -l" });
    expect(Number(kernels.stdout.trim())).toBe(1);
  });
});

describe("python contexts", () => {
  it("keeps state across cells of the default context and counts executions", async () => {
    const first = await run({ code: "x = 41\nprint('hello')\nx + 1" });
    expect(first.contextId).toBe("default-python");
    expect(first.status).toBe("ok");
    expect(first.stdout.join("")).toBe("hello\n");
    expect(value(first)).toBe("42");
    const second = await run({ code: "x * 2" });
    expect(value(second)).toBe("82");
    expect(second.executionCount).toBe((first.executionCount ?? 0) + 1);
    const listed = await api.get<{ contexts: CodeContext[] }>(`/v1/sandboxes/${sandbox.id}/code/contexts`);
    expect(listed.body.contexts).toContainEqual(
      expect.objectContaining({ id: "default-python", language: "python", isDefault: true }),
    );
  });

  it("returns matplotlib figures as PNG results, shown or left at the end of the cell", async () => {
    const shown = await run({ code: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()" });
    expect(shown.status).toBe("ok");
    const figures = shown.results.filter((r) => typeof r.data["image/png"] === "string");
    expect(figures).toHaveLength(1);
    expect(figures[0]!.isMainResult).toBe(false);
    const png = Buffer.from(figures[0]!.data["image/png"] as string, "base64");
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);

    const bare = await run({ code: "fig, ax = plt.subplots()\nax.bar(['a', 'b'], [1, 2])\nfig" });
    const image = bare.results.find((r) => typeof r.data["image/png"] === "string");
    expect(
      Buffer.from(image!.data["image/png"] as string, "base64")
        .subarray(0, 8)
        .equals(PNG_SIGNATURE),
    ).toBe(true);
  });

  it("returns a pandas DataFrame as text/html beside text/plain", async () => {
    const df = await run({ code: "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'n': [1, 2]})" });
    const main = df.results.find((r) => r.isMainResult)!;
    expect(main.data["text/html"]).toContain("<table");
    expect(main.data["text/html"]).toContain("Oslo");
    expect(main.data["text/plain"]).toContain("Lima");
  });

  it("reports an exception with its name, value and traceback, and the next cell runs", async () => {
    const failed = await run({ code: 'def boom():\n    raise ValueError("x")\nboom()' });
    expect(failed.status).toBe("error");
    expect(failed.error).toMatchObject({ name: "ValueError", value: "x" });
    expect(failed.error!.traceback).toContain("boom()");
    expect(failed.error!.traceback).toContain('raise ValueError("x")');
    expect(failed.error!.traceback).not.toContain("\u001b[");
    const next = await run({ code: "x" });
    expect(next.status).toBe("ok");
    expect(value(next)).toBe("41");
  });

  it("interrupts a cell over its timeout and keeps the context's variables", async () => {
    await run({ code: "before_timeout = 'kept'" });
    const looping = await run({ code: "while True:\n    pass", timeoutMs: 2000 });
    expect(looping.status).toBe("timeout");
    expect(looping.error!.name).toBe("TimeoutError");
    expect(looping.error!.value).toContain("kept its state");
    const after = await run({ code: "before_timeout" });
    expect(value(after)).toBe("'kept'");
  });

  it("sets env for one cell only", async () => {
    const withEnv = await run({ code: "import os\nos.environ.get('CELL_ONLY')", env: { CELL_ONLY: "yes" } });
    expect(value(withEnv)).toBe("'yes'");
    const without = await run({ code: "os.environ.get('CELL_ONLY') is None" });
    expect(value(without)).toBe("True");
  });

  it("keeps two contexts apart, restarts one with a fresh state and deletes it", async () => {
    const a = await createContext({ language: "python", cwd: "/tmp", env: { CONTEXT_NAME: "a" } });
    const b = await createContext({ language: "python" });
    expect(a).toMatchObject({ language: "python", cwd: "/tmp", isDefault: false });
    await run({ contextId: a.id, code: "secret = 'only in a'" });
    const inB = await run({ contextId: b.id, code: "secret" });
    expect(inB.error!.name).toBe("NameError");
    const inA = await run({ contextId: a.id, code: "import os\n(secret, os.getcwd(), os.environ['CONTEXT_NAME'])" });
    expect(value(inA)).toBe("('only in a', '/tmp', 'a')");

    const restarted = await api.post<CodeContext>(`/v1/sandboxes/${sandbox.id}/code/contexts/${a.id}/restart`);
    expect(restarted.status).toBe(200);
    expect(restarted.body.id).toBe(a.id);
    const fresh = await run({ contextId: a.id, code: "import os\n('secret' in dir(), os.getcwd())" });
    expect(value(fresh)).toBe("(False, '/tmp')");

    expect((await api.del(`/v1/sandboxes/${sandbox.id}/code/contexts/${a.id}`)).status).toBe(204);
    const gone = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/code/run`, { contextId: a.id, code: "1" });
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("code_context_not_found");
    const listed = await api.get<{ contexts: CodeContext[] }>(`/v1/sandboxes/${sandbox.id}/code/contexts`);
    expect(listed.body.contexts.map((c) => c.id)).not.toContain(a.id);
    expect(listed.body.contexts.map((c) => c.id)).toContain(b.id);
    await api.del(`/v1/sandboxes/${sandbox.id}/code/contexts/${b.id}`);
  });

  it("streams events as they happen: stdout before the cell ends, end last", async () => {
    const go = `/tmp/go-${Date.now()}`;
    const code = `import os, time\nprint('waiting', flush=True)\nfor _ in range(600):\n    if os.path.exists('${go}'): break\n    time.sleep(0.1)\nprint('done')\n'value'`;
    let released = false;
    const events = await stream({ code }, async (event) => {
      if (event.type === "stdout" && !released) {
        // The cell is still running (it waits for this file): its first output came before its end.
        released = true;
        await api.exec(sandbox.id, { command: `touch ${go}` });
      }
    });
    expect(events.map((e) => e.type)).toEqual(["stdout", "stdout", "result", "end"]);
    expect(events[0]).toEqual({ type: "stdout", text: "waiting\n" });
    expect(events.at(-1)).toMatchObject({ type: "end", status: "ok" });
  });

  it("interrupts the cell of a client that goes away; the context keeps its state", async () => {
    const abort = new AbortController();
    await expect(
      stream(
        { code: "left_behind = 7\nprint('looping', flush=True)\nwhile True:\n    pass" },
        (event) => {
          if (event.type === "stdout") abort.abort();
        },
        abort.signal,
      ),
    ).rejects.toThrow();
    // Without the interrupt this cell would queue behind the endless one (for its 5-minute default timeout).
    const after = await run({ code: "left_behind" });
    expect(value(after)).toBe("7");
  });

  it("refuses a request naming both a context and a language, naming contextId", async () => {
    const res = await api.post<ErrorBody>(`/v1/sandboxes/${sandbox.id}/code/run`, {
      code: "1",
      language: "python",
      contextId: "default-python",
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details!.fields![0]!.field).toBe("contextId");
  });
});

describe("javascript and bash contexts", () => {
  it("keeps JavaScript declarations across cells, with top-level await", async () => {
    const first = await run({
      language: "javascript",
      code: "const base = 40\nlet counter = 1\nfunction add(a, b) { return a + b }\nconsole.log('hi from node')\nadd(base, counter)",
    });
    expect(first.contextId).toBe("default-javascript");
    expect(first.stdout.join("")).toBe("hi from node\n");
    expect(value(first)).toBe("41");
    const awaited = await run({
      language: "javascript",
      code: "const later = await new Promise((resolve) => setTimeout(() => resolve(base + 2), 10))\ncounter += 1\nlater",
    });
    expect(awaited.status).toBe("ok");
    expect(value(awaited)).toBe("42");
    const after = await run({ language: "javascript", code: "({ later, counter })" });
    expect(value(after)).toBe("{ later: 42, counter: 2 }");
    const thrown = await run({ language: "javascript", code: "null.property" });
    expect(thrown.status).toBe("error");
    expect(thrown.error!.name).toBe("TypeError");
    expect(thrown.error!.traceback).toContain("TypeError");
    const looping = await run({ language: "javascript", code: "while (true) {}", timeoutMs: 1000 });
    expect(looping.status).toBe("timeout");
    expect(value(await run({ language: "javascript", code: "base" }))).toBe("40");

    // process.exit() ends the interpreter (and the cell, at once); the next cell gets a fresh one.
    const exited = await run({ language: "javascript", code: "process.exit(3)", timeoutMs: 30_000 });
    expect(exited.status).toBe("error");
    expect(exited.error!.name).toBe("ContextExited");
    expect(value(await run({ language: "javascript", code: "typeof base" }))).toBe("'undefined'");
  });

  it("keeps bash's cwd, variables and functions; a failing last command is an error", async () => {
    const first = await run({ language: "bash", code: 'cd /tmp\nGREETING=hello\ngreet() { echo "$GREETING $1"; }' });
    expect(first.status).toBe("ok");
    const second = await run({ language: "bash", code: "pwd\ngreet world\necho oops >&2" });
    expect(second.stdout.join("")).toBe("/tmp\nhello world\n");
    expect(second.stderr.join("")).toBe("oops\n");
    const failed = await run({ language: "bash", code: "ls /no-such-dir" });
    expect(failed.status).toBe("error");
    expect(failed.error).toMatchObject({ name: "ExitCode", value: "exit status 2" });
    const slept = await run({ language: "bash", code: "sleep 600", timeoutMs: 1000 });
    expect(slept.status).toBe("timeout");
    expect((await run({ language: "bash", code: "echo $GREETING" })).stdout.join("")).toBe("hello\n");
    const exited = await run({ language: "bash", code: "exit 4" });
    expect(exited.error!.name).toBe("ContextExited");
    expect((await run({ language: "bash", code: 'echo "[$GREETING]"' })).stdout.join("")).toBe("[]\n");
  });
});

describe("contexts are processes of the sandbox", () => {
  it("keeps a context's variables across pause and resume", async () => {
    const context = await createContext({ language: "python" });
    await run({ contextId: context.id, code: "survivor = [1, 2, 3]" });
    expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/pause`)).body.status).toBe("paused");
    expect((await api.post<SandboxBody>(`/v1/sandboxes/${sandbox.id}/resume`)).body.status).toBe("running");
    const after = await run({ contextId: context.id, code: "sum(survivor)" });
    expect(value(after)).toBe("6");
  });

  it("continues contexts in a fork child, independently of the parent", async () => {
    await run({ code: "family = 'parent'" });
    await run({ language: "javascript", code: "var inherited = 'from parent'" });
    const forked = await api.post<{ sandboxes: SandboxBody[] }>(`/v1/sandboxes/${sandbox.id}/fork`, { count: 1 });
    expect(forked.status).toBe(201);
    const child = forked.body.sandboxes[0]!;
    try {
      expect(value(await run({ code: "family" }, child.id))).toBe("'parent'");
      expect(value(await run({ language: "javascript", code: "inherited" }, child.id))).toBe("'from parent'");
      await run({ code: "family = 'child'" }, child.id);
      expect(value(await run({ code: "family" }))).toBe("'parent'");
    } finally {
      await api.del(`/v1/sandboxes/${child.id}`);
    }
  });
});

describe("the code server", () => {
  it("is started again when something inside the sandbox killed it; the next cell runs", async () => {
    await run({ code: "before_kill = 1" });
    await api.exec(sandbox.id, { command: "pkill -KILL -f /.sandpit/code/server.py; sleep 0.2" });
    const after = await run({ code: "'before_kill' in globals()" });
    expect(after.status).toBe("ok");
    // A new server with new interpreters: the killed one's variables went with it.
    expect(value(after)).toBe("False");
  });
});

describe("an interpreter that ends between cells", () => {
  it("is replaced by the next cell, which says on stderr that the context's state is new", async () => {
    const context = await createContext({ language: "python" });
    const first = await run({ contextId: context.id, code: "import os; kept = 1; os.getpid()" });
    const pid = String(value(first));
    // Killed, it is a zombie until the code server looks: wait for that state, not for the pid to go.
    await api.exec(sandbox.id, {
      command: `kill -KILL ${pid}; while [ -e /proc/${pid} ] && [ "$(cut -d' ' -f3 /proc/${pid}/stat)" != Z ]; do sleep 0.1; done`,
    });
    const after = await run({ contextId: context.id, code: "'kept' in globals()" });
    expect(after.status).toBe("ok");
    expect(value(after)).toBe("False");
    expect(after.stderr.join("")).toMatch(
      /^\[sandpit\] the python interpreter of this context had exited \(status -9\) since its last cell: this cell runs in a new one, with a fresh state\n$/,
    );
    // Only the cell that found it gone says so.
    expect((await run({ contextId: context.id, code: "1" })).stderr).toEqual([]);
  });
});

describe("a sandbox without a Python kernel", () => {
  it("runs bash and JavaScript contexts but answers 409 language_unavailable for python", async () => {
    const base = await api.createSandbox({ template: "base" });
    try {
      const bash = await run({ language: "bash", code: "X=1; echo $((X + 1))" }, base.id);
      expect(bash.stdout.join("")).toBe("2\n");
      const js = await run({ language: "javascript", code: "1 + 1" }, base.id);
      expect(value(js)).toBe("2");
      const python = await api.post<ErrorBody>(`/v1/sandboxes/${base.id}/code/run`, { code: "1" });
      expect(python.status).toBe(409);
      expect(python.body.error.code).toBe("language_unavailable");
      expect(python.body.error.message).toContain("python3-ipykernel");
      const created = await api.post<ErrorBody>(`/v1/sandboxes/${base.id}/code/contexts`, { language: "python" });
      expect(created.status).toBe(409);
    } finally {
      await api.del(`/v1/sandboxes/${base.id}`);
    }
  });
});
