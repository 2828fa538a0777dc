// `sandpit run-code` and `sandpit contexts` as a user runs them (the built CLI) against a real server and
// one code-interpreter sandbox.
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../helpers/server.js";

const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

let server: TestServer;
let workDir: string;
let id: string;

/** Runs the CLI with the test server's URL and key, `input` on its stdin, in `workDir`. */
function sandpit(args: string[], input = ""): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], {
      cwd: workDir,
      env: { ...process.env, SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const run: CliRun = { code: null, stdout: "", stderr: "" };
    child.stdout.on("data", (chunk: Buffer) => {
      run.stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      run.stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      run.code = code;
      resolve(run);
    });
    child.stdin.end(input);
  });
}

async function ok(args: string[], input = ""): Promise<CliRun> {
  const run = await sandpit(args, input);
  if (run.code !== 0) throw new Error(`sandpit ${args.join(" ")} exited ${run.code}: ${run.stderr}`);
  return run;
}

beforeAll(async () => {
  server = await startTestServer();
  workDir = await mkdtemp(path.join(tmpdir(), "sandpit-run-code-"));
  const created = await ok(["create", "--template", "code-interpreter", "--json", "--timeout", "10m"]);
  id = (JSON.parse(created.stdout) as { id: string }).id;
});

afterAll(async () => {
  if (server !== undefined) {
    if (id !== undefined) await sandpit(["rm", id]).catch(() => undefined);
    await server.close();
  }
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe("sandpit run-code", () => {
  it("runs a cell from stdin: prints its output and its value, and keeps its variables for the next cell", async () => {
    const run = await ok(
      ["run-code", id],
      "import sys\nx = 6 * 7\nprint('hello from the cell')\nprint('warn', file=sys.stderr)\nx\n",
    );
    expect(run.stdout).toBe("hello from the cell\n42\n");
    expect(run.stderr).toBe("warn\n");

    const next = await ok(["run-code", id, "-c", "x + 1"]);
    expect(next.stdout).toBe("43\n");
  });

  it("saves a matplotlib figure as a PNG file in --out and prints its path", async () => {
    const outDir = path.join(workDir, "figures");
    const cell = [
      "import matplotlib.pyplot as plt",
      "plt.plot([1, 3, 2])",
      "plt.title('chart')",
      "plt.show()",
      "print('drawn')",
    ].join("\n");
    const run = await ok(["run-code", id, "--out", outDir], cell);
    const lines = run.stdout.trim().split("\n");
    const pngPath = lines.find((line) => line.endsWith(".png"));
    expect(pngPath).toBeDefined();
    expect(path.dirname(pngPath!)).toBe(outDir);
    expect(lines).toContain("drawn");
    const png = await readFile(pngPath!);
    expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(png.length).toBeGreaterThan(1000);
    expect(await readdir(outDir)).toEqual([path.basename(pngPath!)]);

    // The same cell again does not overwrite the first file.
    const again = await ok(["run-code", id, "--out", outDir], cell);
    const secondPath = again.stdout.split("\n").find((line) => line.endsWith(".png"));
    expect(secondPath).not.toBe(pngPath);
    expect((await readdir(outDir)).sort()).toEqual([path.basename(pngPath!), path.basename(secondPath!)].sort());
  });

  it("exits 1 with the traceback when the cell raises, and the context still runs the next cell", async () => {
    const run = await sandpit(["run-code", id], "def explode():\n    raise ValueError('bad input')\nexplode()\n");
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("Traceback");
    expect(run.stderr).toContain("explode()");
    expect(run.stderr).toMatch(/ValueError: bad input\n$/);
    expect(run.stdout).toBe("");

    expect((await ok(["run-code", id, "-c", "x"])).stdout).toBe("42\n");
  });

  it("runs other languages by --language, each in its own default context", async () => {
    const js = await ok(
      ["run-code", id, "--language", "javascript"],
      "const answer = 40 + 2; console.log('js', answer)",
    );
    expect(js.stdout).toContain("js 42");
    expect((await ok(["run-code", id, "-l", "javascript", "-c", "answer + 1"])).stdout).toContain("43");

    const bash = await sandpit(["run-code", id, "--language", "bash", "-c", "echo from bash; false"]);
    expect(bash.stdout).toBe("from bash\n");
    expect(bash.code).toBe(1);

    const bad = await sandpit(["run-code", id, "--language", "cobol", "-c", "x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--language must be one of python, javascript, bash/);
  });
});

describe("sandpit contexts", () => {
  it("creates a context, runs cells in it, lists, restarts and removes it", async () => {
    const created = await ok(["contexts", "create", id, "--language", "python", "--cwd", "/tmp"]);
    const contextId = created.stdout.trim();
    expect(contextId).not.toBe("");

    const cwd = await ok(["run-code", id, "--context", contextId, "-c", "import os\ny = 'own'\nprint(os.getcwd())"]);
    expect(cwd.stdout).toBe("/tmp\n");
    // Its variables are its own: the default context does not see `y`, and it does not see `x`.
    const separate = await sandpit(["run-code", id, "--context", contextId, "-c", "x"]);
    expect(separate.code).toBe(1);
    expect(separate.stderr).toMatch(/NameError/);

    const listed = JSON.parse((await ok(["contexts", "ls", id, "--json"])).stdout) as { id: string; cwd: string }[];
    expect(listed).toContainEqual(expect.objectContaining({ id: contextId, cwd: "/tmp" }));
    const table = await ok(["contexts", "ls", id]);
    expect(table.stdout).toMatch(/^ID\s+LANGUAGE\s+CWD\s+DEFAULT\s+CREATED/);
    expect(table.stdout).toContain(contextId);

    await ok(["contexts", "restart", id, contextId]);
    const afterRestart = await sandpit(["run-code", id, "--context", contextId, "-c", "y"]);
    expect(afterRestart.code).toBe(1);
    expect(afterRestart.stderr).toMatch(/NameError/);

    await ok(["contexts", "rm", id, contextId]);
    const gone = await sandpit(["run-code", id, "--context", contextId, "-c", "1"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/\(code_context_not_found\)\n$/);
  });
});
