// The Python SDK (packages/sdk-python): installed with pip into a fresh venv without any package index
// (Debian's setuptools and wheel build it), then its unittest suite runs against a real server.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/paths.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

const packageDir = path.join(repoRoot, "packages/sdk-python");
const testsDir = path.join(packageDir, "tests");
// Debian's interpreter, which setup.sh gives pip, venv, setuptools and wheel.
const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

interface Outcome {
  code: number | null;
  output: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

/** The environment without anything that points pip or Python elsewhere (a pip.conf, PYTHONPATH...). */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("PIP_") && !key.startsWith("PYTHON") && !key.startsWith("SANDPIT_")) env[key] = value;
  }
  return { ...env, PIP_CONFIG_FILE: "/dev/null", PYTHONDONTWRITEBYTECODE: "1", ...extra };
}

let server: TestServer;
useTestServer((s) => {
  server = s;
});

let workDir: string;
let venvPython: string;
let install: Outcome;

beforeAll(async () => {
  workDir = mkdtempSync(path.join(tmpdir(), "sandpit-pysdk-"));
  const venv = path.join(workDir, "venv");
  venvPython = path.join(venv, "bin/python");
  const created = await run(python, ["-m", "venv", "--system-site-packages", venv], cleanEnv({}), workDir);
  expect(created.code, created.output).toBe(0);
  install = await run(
    venvPython,
    ["-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-cache-dir", packageDir],
    cleanEnv({}),
    workDir,
  );
}, 300_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  // pip builds in the source tree; what it leaves there is ignored by git, and removed here.
  rmSync(path.join(packageDir, "build"), { recursive: true, force: true });
  for (const name of readdirSync(path.join(packageDir, "src"))) {
    if (name.endsWith(".egg-info")) rmSync(path.join(packageDir, "src", name), { recursive: true, force: true });
  }
});

describe("Python SDK", () => {
  it("installs with pip from packages/sdk-python without a package index", async () => {
    expect(install.code, install.output).toBe(0);
    expect(install.output).toMatch(/Successfully installed sandpit-/);
    // Imported from the venv's site-packages, not from the source tree.
    const where = await run(venvPython, ["-c", "import sandpit; print(sandpit.__file__)"], cleanEnv({}), workDir);
    expect(where.code, where.output).toBe(0);
    expect(where.output.trim()).toMatch(new RegExp(`^${workDir}/venv/lib/python3[.0-9]*/site-packages/sandpit/`));
  });

  it("passes its unittest suite against a real server", async () => {
    expect(install.code, install.output).toBe(0);
    const expected = readdirSync(testsDir)
      .filter((name) => /^test_.*\.py$/.test(name))
      .map((name) => readFileSync(path.join(testsDir, name), "utf8").match(/^ {4}def test_/gm)?.length ?? 0)
      .reduce((a, b) => a + b, 0);
    const result = await run(
      venvPython,
      ["-m", "unittest", "discover", "-s", testsDir, "-v"],
      cleanEnv({ SANDPIT_URL: server.url, SANDPIT_API_KEY: server.apiKey }),
      workDir,
    );
    expect(result.code, result.output).toBe(0);
    // Every test method ran and none was skipped (a missing server would skip them).
    expect(result.output).toMatch(new RegExp(`\\nRan ${expected} tests? in `));
    expect(result.output).toMatch(/\nOK\n/);
    expect(result.output).not.toMatch(/skipped/);
  }, 900_000);
});
