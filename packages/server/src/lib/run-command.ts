import { spawn } from "node:child_process";

export class CommandFailedError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${argv.join(" ")} failed (exit ${exitCode ?? "signal"}): ${stderr.trim().slice(0, 2000)}`);
  }
}

export interface RunOptions {
  /** Kill the command and reject after this long. */
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Called with each line of stderr/stdout as it arrives (for progress reporting). */
  onLine?: (line: string) => void;
}

/** Runs a host command to completion and returns its stdout; rejects with its stderr when it fails. */
export function runCommand(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [file, ...args] = argv;
  if (!file) throw new Error("runCommand needs a program");
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let pending = "";
    const feedLines = (chunk: Buffer) => {
      if (!opts.onLine) return;
      pending += chunk.toString("utf8");
      const lines = pending.split(/\r?\n|\r/);
      pending = lines.pop() ?? "";
      for (const line of lines) if (line) opts.onLine(line);
    };
    child.stdout.on("data", (c: Buffer) => {
      out.push(c);
      feedLines(c);
    });
    child.stderr.on("data", (c: Buffer) => {
      err.push(c);
      feedLines(c);
    });
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill("SIGKILL");
          }, opts.timeoutMs);
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else reject(new CommandFailedError(argv, code, Buffer.concat(err).toString("utf8")));
    });
    // A program that exits without reading its input must not crash the server with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Like runCommand, but a failure is returned rather than thrown (for best-effort cleanup). */
export async function tryCommand(argv: readonly string[], opts: RunOptions = {}): Promise<boolean> {
  try {
    await runCommand(argv, opts);
    return true;
  } catch {
    return false;
  }
}
