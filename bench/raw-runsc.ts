import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { testTemplatesDir } from "../tests/helpers/paths.js";

const run = promisify(execFile);

/** The base template's root filesystem (its only layer), for bare runsc. */
export async function baseTemplateRootfs(): Promise<string> {
  const meta = JSON.parse(await readFile(path.join(testTemplatesDir, "base", "template.json"), "utf8")) as {
    layers: string[];
  };
  const [rootfs] = meta.layers;
  if (!rootfs || meta.layers.length !== 1) throw new Error("the base template should be one layer");
  return rootfs;
}

/**
 * Bare runsc on the same template and machine: the baseline every Sandpit figure is compared with.
 * Read-only root, no network, `sleep` as the init process — the least work runsc can do.
 */
export class RawRunsc {
  private constructor(
    private readonly dir: string,
    private readonly rootfs: string,
    private readonly platform: "systrap" | "ptrace",
  ) {}

  static async create(rootfs: string, platform: "systrap" | "ptrace" = "systrap"): Promise<RawRunsc> {
    return new RawRunsc(await mkdtemp("/var/tmp/sandpit-bench-raw-"), rootfs, platform);
  }

  /** runsc's state directory: every runsc process of these containers has it in its argv. */
  get stateDir(): string {
    return path.join(this.dir, "state");
  }

  private globalFlags(): string[] {
    return [`--root=${this.stateDir}`, `--platform=${this.platform}`, "--network=none"];
  }

  private runsc(...args: string[]) {
    return run("runsc", [...this.globalFlags(), ...args]);
  }

  /** Starts a container whose init runs `init` (default: `sleep infinity`). */
  async start(id: string, init = ["/bin/sleep", "infinity"]): Promise<void> {
    const bundle = path.join(this.dir, id);
    await mkdir(bundle, { recursive: true });
    const spec = {
      ociVersion: "1.0.2",
      process: { args: init, env: ["PATH=/usr/bin:/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
      root: { path: this.rootfs, readonly: true },
      hostname: id,
      mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
      linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }] },
    };
    await writeFile(path.join(bundle, "config.json"), JSON.stringify(spec));
    // The detached sandbox inherits stdio: pipes would never close, so runsc writes nowhere.
    const args = this.globalFlags();
    await new Promise<void>((resolve, reject) => {
      const child = spawn("runsc", [...args, "run", "-detach", `-bundle=${bundle}`, id], { stdio: "ignore" });
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runsc run exited with ${code}`))));
    });
  }

  /** checkpoint (the container stops) then restore from the image: raw pause and resume. */
  async checkpoint(id: string): Promise<void> {
    const image = path.join(this.dir, `${id}.img`);
    await rm(image, { recursive: true, force: true });
    // Uncompressed, as Sandpit writes its pause images (SANDPIT_CHECKPOINT_COMPRESSION).
    await this.runsc("checkpoint", `--image-path=${image}`, "--compression=none", id);
  }

  /** Removes the checkpointed container so that it can be restored under its id (1-2 s: not timed). */
  async removeCheckpointed(id: string): Promise<void> {
    await this.runsc("delete", "-force", id);
  }

  async restore(id: string): Promise<void> {
    const args = this.globalFlags();
    const image = `--image-path=${path.join(this.dir, `${id}.img`)}`;
    await new Promise<void>((resolve, reject) => {
      const child = spawn("runsc", [...args, "restore", image, "-detach", `-bundle=${path.join(this.dir, id)}`, id], {
        stdio: ["ignore", "ignore", process.env.BENCH_DEBUG ? "inherit" : "ignore"],
      });
      child.on("error", reject);
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`runsc restore exited with ${code}`))));
    });
  }

  async exec(id: string, ...argv: string[]): Promise<string> {
    return (await this.runsc("exec", id, ...argv)).stdout;
  }

  async destroy(id: string): Promise<void> {
    await this.runsc("delete", "-force", id).catch(() => undefined);
  }

  async close(): Promise<void> {
    const out = await this.runsc("list", "-quiet").catch(() => ({ stdout: "" }));
    for (const id of out.stdout.split("\n").filter(Boolean)) await this.destroy(id);
    await rm(this.dir, { recursive: true, force: true });
  }
}
