import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The built CLI, run as a user runs it: `node packages/cli/dist/main.js ...`. */
export const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI as a process (stdout and stderr pipes, so not a TTY) with `env` added to this process's
 * environment; `onStdout` sees output as it arrives (to wait for a follower to start).
 */
export function runCli(
  args: string[],
  env: Record<string, string>,
  opts: { onStdout?: (soFar: string) => void; signal?: AbortSignal } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const result: CliResult = { code: null, stdout: "", stderr: "" };
    opts.signal?.addEventListener("abort", () => child.kill("SIGINT"), { once: true });
    child.stdout.on("data", (chunk: Buffer) => {
      result.stdout += chunk.toString();
      opts.onStdout?.(result.stdout);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      result.stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      result.code = code;
      resolve(result);
    });
  });
}
