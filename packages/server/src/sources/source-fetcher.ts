import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { isIP } from "node:net";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { SandboxSource } from "@sandpit/contract";
import { CommandFailedError, runCommand } from "../lib/run-command.js";
import type { OutboundGuard } from "../outbound/outbound-guard.js";

type FetchableSource = Exclude<SandboxSource, { type: "snapshot" }>;

/** A source could not be fetched: the message says which and why, in terms the user can act on. */
export class SourceFetchError extends Error {}

const FETCH_TIMEOUT_MS = 5 * 60 * 1000;
const MAX_REDIRECTS = 5;

function describe(source: FetchableSource): string {
  return `${source.type} source ${source.url}`;
}

/**
 * Fetches a sandbox's source (a git repository or a tarball) into a host directory, from where it is
 * copied into the sandbox's disk before the sandbox starts. Every connection goes through the outbound
 * guard, pinned to the address it checked (no DNS rebinding in between), and redirects are checked again.
 */
export class SourceFetcher {
  constructor(
    private readonly guard: OutboundGuard,
    private readonly workRoot: string,
  ) {}

  /** Returns the directory with the content; the caller removes it with `remove`. */
  async fetch(source: FetchableSource, maxBytes: number): Promise<{ dir: string; remove: () => Promise<void> }> {
    await mkdir(this.workRoot, { recursive: true });
    const work = await mkdtemp(path.join(this.workRoot, "src-"));
    const remove = () => rm(work, { recursive: true, force: true });
    try {
      const dir = path.join(work, "content");
      if (source.type === "git") await this.cloneGit(source, dir);
      else await this.fetchTarball(source, work, dir, maxBytes);
      return { dir, remove };
    } catch (e) {
      await remove();
      if (e instanceof SourceFetchError) throw e;
      throw new SourceFetchError(`${describe(source)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private async cloneGit(source: Extract<FetchableSource, { type: "git" }>, dir: string): Promise<void> {
    // git is given the URL as the guard read it (re-serialised), so that curl cannot read another host
    // out of the text than the one that was checked.
    const url = new URL(source.url);
    url.hash = "";
    const remote = url.href;
    const pinned = await this.guarded(source, () => this.guard.resolve(url));
    const address = pinned.family === 6 ? `[${pinned.address}]` : pinned.address;
    const pin: [string, string][] =
      isIP(pinned.hostname) === 0 ? [["http.curloptResolve", `${pinned.hostname}:${pinned.port}:${address}`]] : [];
    // Settings go through the environment, so that credentials never show in the host's process list.
    // Only http(s), no redirects (nor dumb-HTTP alternates, which follow the same setting), and a name
    // connects to the checked address only (an IP literal is connected to as written, and was checked).
    const config: [string, string][] = [
      ["protocol.allow", "never"],
      ["protocol.http.allow", "always"],
      ["protocol.https.allow", "always"],
      ["http.followRedirects", "false"],
      ...pin,
      ["core.hooksPath", "/dev/null"],
      ["credential.helper", ""],
      ["advice.detachedHead", "false"],
    ];
    if (source.username !== undefined || source.password !== undefined) {
      const basic = Buffer.from(`${source.username ?? "git"}:${source.password ?? ""}`).toString("base64");
      config.push(["http.extraHeader", `Authorization: Basic ${basic}`]);
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: "/nonexistent",
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_COUNT: String(config.length),
      ...Object.fromEntries(
        config.flatMap(([k, v], i) => [
          [`GIT_CONFIG_KEY_${i}`, k],
          [`GIT_CONFIG_VALUE_${i}`, v],
        ]),
      ),
    };
    const git = (args: string[]) => runCommand(["git", ...args], { env, timeoutMs: FETCH_TIMEOUT_MS });
    const depth = source.depth !== undefined ? [`--depth=${source.depth}`] : [];
    const ref = source.ref;
    try {
      if (ref === undefined) {
        await git(["clone", "--quiet", ...depth, "--", remote, dir]);
      } else if (/^[0-9a-f]{40}$/.test(ref)) {
        // A commit: fetched by id (protocol v2 serves any reachable commit), then checked out detached.
        await git(["init", "--quiet", dir]);
        await git(["-C", dir, "remote", "add", "origin", "--", remote]);
        await git(["-C", dir, "fetch", "--quiet", ...depth, "origin", ref]);
        await git(["-C", dir, "checkout", "--quiet", "--detach", "FETCH_HEAD"]);
      } else if (/^[0-9a-f]{7,39}$/.test(ref)) {
        // An abbreviated commit can only be found in the full history.
        await git(["clone", "--quiet", "--no-checkout", "--", remote, dir]);
        await git(["-C", dir, "checkout", "--quiet", "--detach", ref]);
      } else {
        await git(["clone", "--quiet", ...depth, "--branch", ref, "--", remote, dir]);
      }
    } catch (e) {
      if (!(e instanceof CommandFailedError)) throw e;
      const why = e.stderr.trim().split("\n").filter(Boolean).slice(-2).join("; ");
      if (
        ref !== undefined &&
        /not found|couldn't find remote ref|did not match|unknown revision|not our ref/i.test(why)
      ) {
        throw new SourceFetchError(`${describe(source)}: ref ${ref} does not exist (${why})`);
      }
      throw new SourceFetchError(`${describe(source)}: git could not clone it (${why || "no output"})`);
    }
  }

  private async fetchTarball(
    source: Extract<FetchableSource, { type: "tarball" }>,
    work: string,
    dir: string,
    maxBytes: number,
  ): Promise<void> {
    const file = path.join(work, "download");
    await this.download(source, new URL(source.url), file, maxBytes);
    await mkdir(dir);
    try {
      // As plain files owned by root: no owners or special permission bits from the archive.
      await runCommand(["tar", "-x", "-f", file, "-C", dir, "--no-same-owner", "--no-same-permissions"], {
        timeoutMs: FETCH_TIMEOUT_MS,
      });
    } catch (e) {
      const why = e instanceof CommandFailedError ? e.stderr.trim().split("\n")[0] : String(e);
      throw new SourceFetchError(`${describe(source)}: not a tar archive that can be unpacked (${why})`);
    }
    // Device nodes, fifos and sockets have no place in a working directory.
    await runCommand(["find", dir, "!", "-type", "f", "!", "-type", "d", "!", "-type", "l", "-delete"]);
    await rm(file, { force: true });
  }

  private async download(source: FetchableSource, url: URL, file: string, maxBytes: number): Promise<void> {
    const { response: res } = await this.guarded(source, () =>
      this.guard.request(url, { idleTimeoutMs: FETCH_TIMEOUT_MS, maxRedirects: MAX_REDIRECTS }),
    );
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      res.resume();
      throw new SourceFetchError(`${describe(source)}: the server answered HTTP ${status}`);
    }
    let received = 0;
    res.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxBytes) {
        res.destroy(new SourceFetchError(`${describe(source)}: larger than the sandbox's disk (${maxBytes} bytes)`));
      }
    });
    await pipeline(res, createWriteStream(file));
  }

  /** Runs an outbound step; its failure (a refusal of the guard included) names the source. */
  private async guarded<T>(source: FetchableSource, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (e) {
      throw new SourceFetchError(`${describe(source)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
