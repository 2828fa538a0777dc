import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { type CheckpointCompression, type RunscPlatform, runscLauncherPath } from "../config.js";
import { CommandFailedError, runCommand } from "../lib/run-command.js";
import { commandCapabilities } from "./oci-spec.js";

export interface RunscState {
  id: string;
  status: "created" | "running" | "stopped" | "paused" | string;
  pid: number;
}

/**
 * The runsc command line. Every container shares one `--root` state directory per server instance.
 * `run` and `restore` go through a private mount namespace where /proc/sys/net is hidden: runsc refuses
 * `--network=sandbox` when it believes it is in the root network namespace, and its check is fooled by
 * kernels that show /proc/sys/net/core/rmem_default in every namespace.
 */
export class Runsc {
  constructor(
    private readonly binary: string,
    private readonly stateDir: string,
    /** gVisor's platform: systrap (default) or ptrace, for every container of this state directory. */
    private readonly platform: RunscPlatform = "systrap",
    /** How checkpoint images are written (see ServerConfig.checkpointCompression). */
    private readonly checkpointCompression: CheckpointCompression = "none",
    /** Starts `run` and `restore` where /proc/sys/net is hidden (packages/server/native/runsc-launch.c). */
    private readonly launcher: string = runscLauncherPath,
  ) {}

  private globalFlags(): string[] {
    // net-disconnect-ok: open TCP connections are cut at checkpoint instead of failing it.
    return [
      `--root=${this.stateDir}`,
      `--platform=${this.platform}`,
      "--network=sandbox",
      "--overlay2=none",
      "--net-disconnect-ok",
    ];
  }

  /**
   * `runsc run -detach`. The sandbox and gofer processes outlive this call and inherit its stdio, so
   * stdio goes to a file (`outputFile`) rather than pipes that would never close.
   */
  async run(bundleDir: string, id: string, logFile: string, outputFile: string): Promise<void> {
    await this.startDetached(["run", "-detach", `-bundle=${bundleDir}`, id], logFile, outputFile);
  }

  /** `runsc restore -detach`: the sandbox continues from a checkpoint image, processes and memory. */
  async restore(bundleDir: string, id: string, imageDir: string, logFile: string, outputFile: string) {
    await this.startDetached(
      ["restore", `--image-path=${imageDir}`, "-detach", `-bundle=${bundleDir}`, id],
      logFile,
      outputFile,
    );
  }

  /** Saves the sandbox's memory and processes to `imageDir`; the container stops unless `leaveRunning`. */
  /** Fails with runsc's own error (the first line of its stderr; a stack trace follows) as the message. */
  async checkpoint(id: string, imageDir: string, opts: { leaveRunning?: boolean } = {}): Promise<void> {
    await runCommand(
      [
        this.binary,
        `--root=${this.stateDir}`,
        "checkpoint",
        `--image-path=${imageDir}`,
        "--exclude-committed-zero-pages",
        `--compression=${this.checkpointCompression}`,
        ...(opts.leaveRunning ? ["--leave-running"] : []),
        id,
      ],
      { timeoutMs: 300_000 },
    ).catch((e: unknown) => {
      const first = e instanceof CommandFailedError ? e.stderr.trim().split("\n")[0]?.replace(/:$/, "") : undefined;
      throw first ? new Error(`runsc ${first.slice(0, 1000)}`, { cause: e }) : e;
    });
  }

  private async startDetached(command: string[], logFile: string, outputFile: string): Promise<void> {
    const argv = [this.launcher, this.binary, ...this.globalFlags(), `--log=${logFile}`, ...command];
    const out = openSync(outputFile, "a");
    try {
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", out, out] });
        const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        child.on("error", reject);
        child.on("exit", (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      if (code !== 0) throw new CommandFailedError(argv, code, readFileSync(outputFile, "utf8"));
    } finally {
      closeSync(out);
    }
  }

  async state(id: string): Promise<RunscState | undefined> {
    try {
      const out = await runCommand([this.binary, `--root=${this.stateDir}`, "state", id], { timeoutMs: 15_000 });
      return JSON.parse(out) as RunscState;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<RunscState[]> {
    const out = await runCommand([this.binary, `--root=${this.stateDir}`, "list", "-format=json"], {
      timeoutMs: 15_000,
    });
    const parsed = JSON.parse(out || "[]") as RunscState[] | null;
    return parsed ?? [];
  }

  /** Kills and removes the container; succeeds when it does not exist. */
  async deleteForce(id: string): Promise<void> {
    try {
      await runCommand([this.binary, `--root=${this.stateDir}`, "delete", "-force", id], { timeoutMs: 30_000 });
    } catch (e) {
      if (!String(e).includes("does not exist") && !String(e).includes("not found")) throw e;
    }
  }

  /**
   * Runs a process in the sandbox through runsc itself: the fallback when the agent does not answer.
   * Slower (a new runsc process per call) but independent of anything inside the sandbox.
   */
  exec(id: string, argv: string[], opts: FallbackExecOptions = {}): Promise<FallbackExecResult> {
    const args = [
      `--root=${this.stateDir}`,
      "exec",
      // Without --cap, runsc exec hands the process the container's capabilities, which are the agent's.
      `--cap=${commandCapabilities.join(",")}`,
      ...(opts.cwd ? [`--cwd=${opts.cwd}`] : []),
      ...(opts.env ?? []).flatMap((e) => ["--env", e]),
      id,
      ...argv,
    ];
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const child = spawn(this.binary, args, { stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (c: Buffer) => out.push(c));
      child.stderr.on("data", (c: Buffer) => err.push(c));
      let timedOut = false;
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            child.kill("SIGKILL");
          }, opts.timeoutMs)
        : undefined;
      child.on("error", reject);
      child.on("close", (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({
          exitCode: code ?? 128 + (signal === "SIGKILL" ? 9 : 15),
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
          timedOut,
          durationMs: Date.now() - started,
        });
      });
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.stdin ?? "");
    });
  }
}

export interface FallbackExecOptions {
  cwd?: string;
  env?: string[];
  timeoutMs?: number;
  stdin?: string;
}

export interface FallbackExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}
