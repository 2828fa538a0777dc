import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, rmdir, statfs, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { NetworkPolicy } from "@sandpit/contract";
import { AgentClient, type AgentEndpoint } from "../agent/agent-client.js";
import { phase } from "../lib/phases.js";
import { runCommand } from "../lib/run-command.js";
import { addressingFor } from "../network/addressing.js";
import type { DnsProxy } from "../network/dns-proxy.js";
import type { EgressAudit } from "../network/egress-audit.js";
import type { EgressBroker } from "../network/egress-broker.js";
import type { HostNetwork } from "../network/host-network.js";
import { ociSpec } from "./oci-spec.js";
import { SandboxRootfs } from "./rootfs.js";
import type { FallbackExecOptions, Runsc } from "./runsc.js";
import type {
  EgressTarget,
  RuntimeStatus,
  SandboxDeathReason,
  SandboxLaunchSpec,
  SandboxRuntime,
  SandboxStats,
} from "./runtime.js";
import { SpareDisks } from "./spare-disks.js";
import { releaseMounts, stageMounts } from "./volume-mounts.js";

export const AGENT_PORT = 49982;
const AGENT_PATH = "/.sandpit/sandpit-agent";
/** Where the in-sandbox helper servers lie in every sandbox, beside the agent: each at `<this>/<its dir's name>`. */
const HELPER_SERVERS_ROOT = "/.sandpit";
/** The in-sandbox code server (code contexts, packages/agent/code). */
export const CODE_SERVER_DIR = `${HELPER_SERVERS_ROOT}/code`;
/** The in-sandbox desktop server (display, screenshots, input; packages/agent/desktop). */
export const DESKTOP_SERVER_DIR = `${HELPER_SERVERS_ROOT}/desktop`;
/**
 * The agent reads its token from this file and removes it before it listens: the token is never in its
 * environment or argv, where any process of the sandbox could read it.
 */
const AGENT_TOKEN_FILE = "/.sandpit/agent-token";
const CGROUP_PARENT = "sandpit";
/**
 * pids.max counts host threads of the sandbox (~25 idle), not guest processes. Under systrap a fork bomb
 * grows them ~2.5 per guest task until the agent's process guard (512 guest tasks) kills it: measured
 * peak ~1260. This leaves room for that peak three times over while still stopping a runaway runsc.
 */
const PIDS_LIMIT = 4096;
const AGENT_READY_TIMEOUT_MS = 20_000;
/**
 * The host's OOM killer takes the process of a sandbox's cgroup with the most memory. Each guest process
 * lives in a host stub process of its own, while the sentry holds the sandbox's kernel and the memory of
 * its files in tmpfs: with equal weights, a process over the limit next to 100 MB in /tmp took the whole
 * sandbox (256 MB) with it. Stubs weigh half the limit more (oom_score_adj is in thousandths of it), so
 * the sentry goes only when it holds half the limit more than the largest process.
 */
const GUEST_OOM_SCORE_ADJ = 500;

export interface GvisorRuntimeOptions {
  dataDir: string;
  runsc: Runsc;
  network: HostNetwork;
  dns: DnsProxy;
  /** Brokers HTTP(S) of transform domains (credential injection); absent: transforms are not applied. */
  broker?: EgressBroker;
  /** Records every egress attempt of the sandboxes it is told about. */
  audit?: EgressAudit;
  subnet: string;
  netPrefix: string;
  agentBinary: string;
  /**
   * The in-sandbox helper servers' directories (packages/agent/code, packages/agent/desktop), shipped with
   * the agent, each at /.sandpit/<its name> (CODE_SERVER_DIR, DESKTOP_SERVER_DIR).
   */
  helperServerDirs: string[];
  /**
   * Storage every node of a cluster reaches (SANDPIT_SHARED_DIR): paused sandboxes leave a complete
   * image in its `sandboxes/` (checkpoint, disk, layer list), so that any node resumes them, and the
   * agent layer they all reference lives in its `agent-layers/`. Unset (one host): both stay in the
   * data directory.
   */
  sharedDir?: string;
}

/** One gVisor sandbox (runsc, systrap) per Sandpit sandbox, with its own netns, rootfs and cgroup. */
export class GvisorRuntime implements SandboxRuntime {
  private agentLayer: string | undefined;
  /** runsc-sandbox process of each sandbox, with its start time so that a reused pid is not mistaken. */
  private readonly sandboxPids = new Map<string, { pid: number; startTime: string }>();
  /**
   * `runsc delete` after a checkpoint takes 1-2 s on hosts whose init reaps orphans late (runsc waits
   * for the exited sandbox process, a zombie until reaped): pause does not wait for it, and a resume
   * restores under a new container id (see `containerOf`) instead of waiting; destroy waits. By container id.
   */
  private readonly pendingDeletes = new Map<string, Promise<void>>();
  /** The runsc container each sandbox runs as now (see `containerOf`). */
  private readonly containers = new Map<string, string>();
  private readonly spareDisks: SpareDisks;

  constructor(private readonly opts: GvisorRuntimeOptions) {
    this.spareDisks = new SpareDisks(path.join(opts.dataDir, "spare-disks"));
  }

  /**
   * Copies the agent binary and the helper servers into a content-addressed read-only layer. Running
   * sandboxes keep the layer they started with, so a rebuilt agent never changes under them. With shared
   * storage the layer is there: a sandbox restored on another node finds the very files its agent runs from.
   */
  async prepare(): Promise<void> {
    const binary = await readFile(this.opts.agentBinary).catch(() => {
      throw new Error(`agent binary missing at ${this.opts.agentBinary}: run "npm run build"`);
    });
    const digest = createHash("sha256").update(binary);
    const helpers: { source: string; target: string; files: string[] }[] = [];
    for (const source of this.opts.helperServerDirs) {
      const target = path.posix.join(HELPER_SERVERS_ROOT, path.basename(source));
      // Its files only: a directory beside them (Python's __pycache__ after a local run) is not shipped.
      const files = (await readdir(source, { withFileTypes: true }))
        .filter((entry) => entry.isFile())
        .map((entry) => entry.name)
        .sort();
      helpers.push({ source, target, files });
      digest.update(target);
      for (const name of files) digest.update(name).update(await readFile(path.join(source, name)));
    }
    const layer = path.join(
      this.opts.sharedDir ?? this.opts.dataDir,
      "agent-layers",
      digest.digest("hex").slice(0, 16),
    );
    if (!existsSync(layer)) {
      // Made aside and renamed into place: nodes sharing the directory never see a half-written layer.
      const partial = `${layer}.${process.pid}.partial`;
      const target = path.join(partial, AGENT_PATH);
      await rm(partial, { recursive: true, force: true });
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(this.opts.agentBinary, target);
      await chmod(target, 0o755);
      for (const helper of helpers) {
        const dir = path.join(partial, helper.target);
        await mkdir(dir, { recursive: true });
        for (const name of helper.files) {
          await copyFile(path.join(helper.source, name), path.join(dir, name));
          await chmod(path.join(dir, name), 0o644);
        }
      }
      await rename(partial, layer).catch(async (e: NodeJS.ErrnoException) => {
        await rm(partial, { recursive: true, force: true });
        // Another node put the same layer in place meanwhile.
        if (!existsSync(layer)) throw e;
      });
    }
    this.agentLayer = layer;
    await this.spareDisks.reset();
  }

  /**
   * Gives back what only the server holds on the host: the spare disks' images and loop mounts (sandboxes,
   * their disks and mounts keep running without the server).
   */
  async close(): Promise<void> {
    await this.spareDisks.idle();
    await this.spareDisks.reset();
  }

  private sandboxDir(id: string) {
    return path.join(this.opts.dataDir, "sandboxes", id);
  }

  private containerIdFile(id: string) {
    return path.join(this.sandboxDir(id), "container-id");
  }

  /**
   * The runsc container (and cgroup) a sandbox runs as: its own id when it starts, `<id>.<n>` after its
   * n-th resume in place — so that a resume never waits for the paused container's teardown. Kept in
   * its directory for the next server process.
   */
  private async containerOf(id: string): Promise<string> {
    const known = this.containers.get(id);
    if (known) return known;
    const saved = (await readFile(this.containerIdFile(id), "utf8").catch(() => "")).trim();
    const container = saved || id;
    this.containers.set(id, container);
    return container;
  }

  /** Deletes a stopped container in the background; destroying the sandbox waits for it. */
  private deleteInBackground(container: string): void {
    const deletion = this.opts.runsc
      .deleteForce(container)
      .catch(() => undefined)
      .finally(() => this.pendingDeletes.delete(container));
    this.pendingDeletes.set(container, deletion);
  }

  /** The deletions still running of a sandbox's earlier containers. */
  private async deletionsOf(id: string): Promise<void> {
    const mine = [...this.pendingDeletes].filter(([container]) => sandboxOfContainer(container) === id);
    await Promise.all(mine.map(([, deletion]) => deletion));
  }

  /**
   * Where a sandbox's volume mounts are staged: outside its sandbox directory, so that removing that
   * directory can never reach into a volume.
   */
  private volumeMountsDir(id: string) {
    return path.join(this.opts.dataDir, "volume-mounts", id);
  }

  /** The paused image of a sandbox on shared storage (the layout of a snapshot); undefined on one host. */
  private pausedImageDir(id: string): string | undefined {
    return this.opts.sharedDir && path.join(this.opts.sharedDir, "sandboxes", id);
  }

  private checkpointDir(id: string) {
    return path.join(this.pausedImageDir(id) ?? this.sandboxDir(id), "checkpoint");
  }

  /**
   * Checkpoints the sandbox. With shared storage the checkpoint is written there, followed by a copy of
   * its disk and its layer list: the image is complete — any node can resume it — once `checkpoint`
   * appears, which is renamed into place last.
   */
  async pause(id: string): Promise<void> {
    const image = this.checkpointDir(id);
    const partial = `${image}.partial`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    const container = await this.containerOf(id);
    await this.opts.runsc.checkpoint(container, partial);
    this.sandboxPids.delete(id);
    this.deleteInBackground(container);
    await rm(image, { recursive: true, force: true });
    const shared = this.pausedImageDir(id);
    if (shared) {
      const rootfs = new SandboxRootfs(this.sandboxDir(id));
      await rootfs.sync();
      await runCommand(["cp", "--sparse=always", rootfs.diskImage, path.join(shared, "disk.img")]);
      await writeFile(path.join(shared, "layers.json"), JSON.stringify(await rootfs.lowerDirs()));
    }
    // The image becomes the one to resume from only once it is complete.
    await rename(partial, image);
  }

  /**
   * Continues a paused sandbox. Where it was paused, its disk, rootfs and bundle are still in place and
   * only its memory is restored; on another node (it moved) it is restored from its image on shared
   * storage, under this node's network slot. Either way, an image on shared storage is stale once the
   * sandbox runs again, and is removed.
   */
  async resume(spec: Omit<SandboxLaunchSpec, "layers" | "seeds" | "files">): Promise<AgentEndpoint> {
    const shared = this.pausedImageDir(spec.id);
    const dir = this.sandboxDir(spec.id);
    let endpoint: AgentEndpoint;
    if (shared && !existsSync(path.join(dir, "bundle", "config.json"))) {
      endpoint = await this.startFromSnapshot(spec, shared);
    } else {
      const a = addressingFor(this.opts.subnet, this.opts.netPrefix, spec.netIndex);
      const container = nextContainer(spec.id, await this.containerOf(spec.id));
      // Its own cgroup too: the paused container's teardown removes that container's cgroup.
      const bundleConfig = path.join(dir, "bundle", "config.json");
      const config = JSON.parse(await readFile(bundleConfig, "utf8")) as { linux: { cgroupsPath: string } };
      config.linux.cgroupsPath = `/${CGROUP_PARENT}/${container}`;
      await writeFile(bundleConfig, JSON.stringify(config));
      await writeFile(this.containerIdFile(spec.id), container);
      this.containers.set(spec.id, container);
      // The veth outlived the pause: the policy is applied while runsc restores.
      const policy = this.policyBeside(spec.egress, Promise.resolve());
      try {
        await this.opts.network.configureSandboxEnd(a);
        await this.opts.runsc.restore(
          path.join(dir, "bundle"),
          container,
          this.checkpointDir(spec.id),
          path.join(dir, "runsc.log"),
          path.join(dir, "runsc.out"),
        );
        endpoint = { host: a.sandboxIp, port: AGENT_PORT, token: spec.agentToken };
        await Promise.all([
          this.waitForAgent(spec.id, endpoint),
          this.weightOomTowardsGuestProcesses(container),
          policy.applied,
        ]);
      } catch (e) {
        await policy.settled;
        throw e;
      }
    }
    if (shared) await rm(shared, { recursive: true, force: true });
    return endpoint;
  }

  async hasCheckpoint(id: string): Promise<boolean> {
    return existsSync(path.join(this.checkpointDir(id), "checkpoint.img"));
  }

  async missingLayers(id: string): Promise<string[] | undefined> {
    const shared = this.pausedImageDir(id);
    if (!shared || !(await this.hasCheckpoint(id))) return undefined;
    const layers = JSON.parse(await readFile(path.join(shared, "layers.json"), "utf8")) as string[];
    return layers.filter((layer) => !existsSync(layer));
  }

  async discardImage(id: string): Promise<void> {
    const shared = this.pausedImageDir(id);
    if (shared) await rm(shared, { recursive: true, force: true });
  }

  async applyNetworkPolicy(target: EgressTarget, policy: NetworkPolicy): Promise<void> {
    const a = addressingFor(this.opts.subnet, this.opts.netPrefix, target.netIndex);
    // The DNS proxy and the broker listen on the gateway before the firewall sends the sandbox there.
    await Promise.all([
      this.opts.dns.setClient(a, policy),
      this.opts.broker?.setClient(a, { orgId: target.orgId, sandboxId: target.sandboxId, policy }),
    ]);
    await this.opts.network.applyEgress(a, policy);
    this.opts.audit?.setClient(a.sandboxIp, {
      orgId: target.orgId,
      sandboxId: target.sandboxId,
      policy,
      gateway: a.hostIp,
    });
  }

  portAddress(spec: Pick<SandboxLaunchSpec, "netIndex">, port: number) {
    return { host: addressingFor(this.opts.subnet, this.opts.netPrefix, spec.netIndex).sandboxIp, port };
  }

  agentEndpoint(spec: Pick<SandboxLaunchSpec, "netIndex" | "agentToken">): AgentEndpoint {
    const a = addressingFor(this.opts.subnet, this.opts.netPrefix, spec.netIndex);
    return { host: a.sandboxIp, port: AGENT_PORT, token: spec.agentToken };
  }

  async start(spec: SandboxLaunchSpec): Promise<AgentEndpoint> {
    if (!this.agentLayer) throw new Error("GvisorRuntime.prepare() was not called");
    const a = addressingFor(this.opts.subnet, this.opts.netPrefix, spec.netIndex);
    return this.launch(
      spec,
      {
        lowerDirs: [this.agentLayer, ...spec.layers],
        seeds: spec.seeds ?? [],
        disk: { sizeMb: spec.diskMb, spares: this.spareDisks },
        privateFiles: { [AGENT_TOKEN_FILE.slice(1)]: spec.agentToken },
        files: {
          ...spec.files,
          "etc/hostname": `${spec.id}\n`,
          "etc/hosts": `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${spec.id}\n`,
          // Every UDP query to port 53 goes to Sandpit's DNS proxy, whatever address it is sent to.
          "etc/resolv.conf": `nameserver ${a.hostIp}\noptions timeout:1 attempts:1\n`,
        },
      },
      (bundle, dir) => this.opts.runsc.run(bundle, spec.id, path.join(dir, "runsc.log"), path.join(dir, "runsc.out")),
    );
  }

  /**
   * A new sandbox that continues a snapshot: a copy of its disk over the same read-only layers, and its
   * memory and processes restored — under the new sandbox's own network identity and cgroup.
   */
  async startFromSnapshot(spec: Omit<SandboxLaunchSpec, "layers" | "seeds" | "files">, snapshotDir: string) {
    const lowerDirs = JSON.parse(await readFile(path.join(snapshotDir, "layers.json"), "utf8")) as string[];
    return this.launch(
      spec,
      { lowerDirs, disk: { copyOf: path.join(snapshotDir, "disk.img") }, files: {}, seeds: [] },
      (bundle, dir) =>
        this.opts.runsc.restore(
          bundle,
          spec.id,
          path.join(snapshotDir, "checkpoint"),
          path.join(dir, "runsc.log"),
          path.join(dir, "runsc.out"),
        ),
    );
  }

  /**
   * Copies a paused sandbox (checkpoint image, disk, layer list) into `snapshotDir`; returns its size.
   * The sandbox must be paused: its disk is then quiet and consistent.
   */
  async copySnapshot(id: string, snapshotDir: string): Promise<number> {
    const rootfs = new SandboxRootfs(this.sandboxDir(id));
    await rootfs.sync();
    await mkdir(snapshotDir, { recursive: true });
    await runCommand(["cp", "-a", "--sparse=always", this.checkpointDir(id), path.join(snapshotDir, "checkpoint")]);
    await runCommand(["cp", "--sparse=always", rootfs.diskImage, path.join(snapshotDir, "disk.img")]);
    await writeFile(path.join(snapshotDir, "layers.json"), JSON.stringify(await rootfs.lowerDirs()));
    return Number((await runCommand(["du", "-sb", snapshotDir])).split("\t")[0]);
  }

  async captureLayer(id: string, target: string): Promise<void> {
    const rootfs = new SandboxRootfs(this.sandboxDir(id));
    await rootfs.sync();
    await mkdir(target, { recursive: true });
    // -a keeps owners, modes, xattrs (overlay's opaque-directory marks) and whiteout device nodes.
    await runCommand(["cp", "-a", `${rootfs.upper}/.`, target]);
    for (const runtimeFile of [
      "etc/hostname",
      "etc/hosts",
      "etc/resolv.conf",
      "run/sandpit-agent",
      AGENT_TOKEN_FILE.slice(1),
    ]) {
      await rm(path.join(target, runtimeFile), { recursive: true, force: true });
    }
  }

  /**
   * Applies `egress` once `ready` (the veth) is there, beside the boot or restore that follows: the policy is
   * host-side. `applied` is awaited with the agent; `settled` never rejects and is attached at once, so a
   * policy that fails while runsc still runs is observed, and a failed start waits on it before its cleanup.
   */
  private policyBeside(egress: SandboxLaunchSpec["egress"], ready: Promise<unknown>) {
    const applied = egress
      ? ready.then(() => phase("nft", () => this.applyNetworkPolicy(egress.target, egress.policy)))
      : ready.then(() => undefined);
    const settled = applied.then(
      () => undefined,
      () => undefined,
    );
    return { applied, settled };
  }

  /** Network, rootfs and bundle of a sandbox, then `boot` (run or restore) and wait for its agent. */
  private async launch(
    spec: Omit<SandboxLaunchSpec, "layers" | "seeds" | "files">,
    rootfsSpec: Parameters<SandboxRootfs["create"]>[0],
    boot: (bundle: string, dir: string) => Promise<void>,
  ): Promise<AgentEndpoint> {
    const a = addressingFor(this.opts.subnet, this.opts.netPrefix, spec.netIndex);
    const dir = this.sandboxDir(spec.id);
    const rootfs = new SandboxRootfs(dir);
    // A new container of its own id (a sandbox that moved back here starts over).
    this.containers.set(spec.id, spec.id);
    await rm(this.containerIdFile(spec.id), { force: true });
    // Independent of each other: the network and the disk are made at the same time, and the egress
    // policy is applied while runsc starts (it is host-side and only needs the veth).
    const network = phase("netns", () => this.opts.network.setUp(a));
    const policy = this.policyBeside(spec.egress, network);
    try {
      await Promise.all([network, phase("rootfs", () => rootfs.create(rootfsSpec))]);
      const mounts = await phase("volumes", () => stageMounts(this.volumeMountsDir(spec.id), spec.mounts ?? []));
      const bundle = path.join(dir, "bundle");
      await mkdir(bundle, { recursive: true });
      const config = ociSpec({
        rootfs: rootfs.merged,
        hostname: spec.id,
        args: [AGENT_PATH],
        env: [
          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          // Any address and any peer but the sandbox itself: a restored copy keeps working under a new
          // network identity. The firewall lets only the host reach the port.
          `SANDPIT_AGENT_LISTEN=0.0.0.0:${AGENT_PORT}`,
          // A restored agent (resume, snapshot children) keeps the token it read in its memory.
          `SANDPIT_AGENT_TOKEN_FILE=${AGENT_TOKEN_FILE}`,
          "SANDPIT_AGENT_ALLOW=remote",
        ],
        cgroupsPath: `/${CGROUP_PARENT}/${spec.id}`,
        netnsPath: this.opts.network.netnsPath(a),
        vcpus: spec.vcpus,
        memoryBytes: spec.memoryMb * 1024 * 1024,
        pidsLimit: PIDS_LIMIT,
        mounts,
      });
      await writeFile(path.join(bundle, "config.json"), JSON.stringify(config));
      await phase("runsc", () => boot(bundle, dir));
      const endpoint: AgentEndpoint = { host: a.sandboxIp, port: AGENT_PORT, token: spec.agentToken };
      await Promise.all([
        phase("agent", () => this.waitForAgent(spec.id, endpoint)),
        policy.applied,
        this.weightOomTowardsGuestProcesses(spec.id),
      ]);
      return endpoint;
    } catch (e) {
      await policy.settled;
      await this.destroy(spec.id, spec.netIndex);
      throw e;
    }
  }

  /**
   * Raises GUEST_OOM_SCORE_ADJ on the stub processes of a container that has just booted: every process of
   * its cgroup but runsc's own (sentry, gofer). Stubs made later are cloned from the first one, which
   * exists once runsc has booted, and inherit its weight. Raising needs no privilege; lowering would.
   */
  private async weightOomTowardsGuestProcesses(container: string): Promise<void> {
    const procs = await readFile(this.cgroupFile("memory", container, "cgroup.procs"), "utf8").catch(() => "");
    await Promise.all(
      procs
        .split("\n")
        .filter(Boolean)
        .map(async (pid) => {
          const argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "runsc")).split("\0")[0];
          if (argv0?.startsWith("runsc")) return;
          const adjFile = `/proc/${pid}/oom_score_adj`;
          const current = Number(await readFile(adjFile, "utf8").catch(() => GUEST_OOM_SCORE_ADJ));
          if (current >= GUEST_OOM_SCORE_ADJ) return;
          // A stub that exited meanwhile needs no weight.
          await writeFile(adjFile, String(GUEST_OOM_SCORE_ADJ)).catch(() => undefined);
        }),
    );
  }

  private async waitForAgent(id: string, endpoint: AgentEndpoint): Promise<void> {
    const client = new AgentClient(endpoint);
    const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.health({ timeoutMs: 1000 });
          return;
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`agent of ${id} did not answer: ${String(e)}`);
          if (attempt % 50 === 49 && (await this.status(id)).state !== "running") {
            throw new Error(`sandbox ${id} stopped while starting`);
          }
          // The agent usually answers within ~20 ms of runsc returning: poll finely at first.
          await sleep(attempt < 50 ? 1 : 20);
        }
      }
    } finally {
      client.close();
    }
  }

  private async processStartTime(pid: number): Promise<string | undefined> {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
    if (!stat) return undefined;
    // Fields after the parenthesised command name: state is the first, starttime the 20th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    return fields[19];
  }

  async alive(id: string): Promise<boolean> {
    let known = this.sandboxPids.get(id);
    if (!known) {
      const state = await this.opts.runsc.state(await this.containerOf(id));
      if (state?.status !== "running" || !state.pid) return false;
      const startTime = await this.processStartTime(state.pid);
      if (!startTime) return false;
      known = { pid: state.pid, startTime };
      this.sandboxPids.set(id, known);
    }
    const startTime = await this.processStartTime(known.pid);
    if (startTime === known.startTime) return true;
    this.sandboxPids.delete(id);
    return false;
  }

  async status(id: string): Promise<RuntimeStatus> {
    const state = await this.opts.runsc.state(await this.containerOf(id));
    if (!state) return { state: "missing" };
    return { state: state.status === "running" ? "running" : "stopped" };
  }

  private cgroupFile(controller: string, container: string, file: string) {
    return `/sys/fs/cgroup/${controller}/${CGROUP_PARENT}/${container}/${file}`;
  }

  async deathReason(id: string): Promise<SandboxDeathReason> {
    const container = await this.containerOf(id);
    const oomControl = await readFile(this.cgroupFile("memory", container, "memory.oom_control"), "utf8").catch(
      () => "",
    );
    const kills = /oom_kill (\d+)/.exec(oomControl)?.[1];
    if (kills && Number(kills) > 0) return "oom";
    const log = await readFile(path.join(this.sandboxDir(id), "runsc.log"), "utf8").catch(() => "");
    if (/out of memory|OOM/i.test(log.slice(-20_000))) return "oom";
    return "crashed";
  }

  /**
   * cgroup v1 counters (cpuacct.usage, memory usage without inactive page cache as `docker stats` and
   * the kubelet count it), statfs of the mounted disk image, and the host end of the veth — whose
   * transmitted bytes are what the sandbox received.
   */
  async stats(sandbox: Pick<SandboxLaunchSpec, "id" | "netIndex">): Promise<SandboxStats | undefined> {
    const container = await this.containerOf(sandbox.id);
    const id = sandbox.id;
    const iface = addressingFor(this.opts.subnet, this.opts.netPrefix, sandbox.netIndex).hostIface;
    const counter = async (file: string) => Number((await readFile(file, "utf8")).trim());
    try {
      const [cpuUsageNs, memoryUsage, memoryStat, memoryLimitBytes, disk, hostTx, hostRx] = await Promise.all([
        counter(this.cgroupFile("cpuacct", container, "cpuacct.usage")),
        counter(this.cgroupFile("memory", container, "memory.usage_in_bytes")),
        readFile(this.cgroupFile("memory", container, "memory.stat"), "utf8"),
        counter(this.cgroupFile("memory", container, "memory.limit_in_bytes")),
        statfs(new SandboxRootfs(this.sandboxDir(id)).diskMount),
        counter(`/sys/class/net/${iface}/statistics/tx_bytes`),
        counter(`/sys/class/net/${iface}/statistics/rx_bytes`),
      ]);
      const inactiveFile = Number(/^total_inactive_file (\d+)$/m.exec(memoryStat)?.[1] ?? 0);
      return {
        cpuUsageNs,
        memoryBytes: Math.max(0, memoryUsage - inactiveFile),
        memoryLimitBytes,
        diskBytes: (disk.blocks - disk.bfree) * disk.bsize,
        diskLimitBytes: disk.blocks * disk.bsize,
        networkRxBytes: hostTx,
        networkTxBytes: hostRx,
      };
    } catch {
      // A sandbox that is not (or no longer) running has no cgroup, mounted disk or veth.
      return undefined;
    }
  }

  async destroy(id: string, netIndex: number | null): Promise<void> {
    this.sandboxPids.delete(id);
    const container = await this.containerOf(id);
    await this.deletionsOf(id);
    await this.opts.runsc.deleteForce(container);
    await releaseMounts(this.volumeMountsDir(id));
    await new SandboxRootfs(this.sandboxDir(id)).remove();
    this.containers.delete(id);
    for (const controller of ["memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio"]) {
      await rmdir(`/sys/fs/cgroup/${controller}/${CGROUP_PARENT}/${container}`).catch(() => undefined);
    }
    if (netIndex !== null) {
      const a = addressingFor(this.opts.subnet, this.opts.netPrefix, netIndex);
      await this.opts.dns.removeClient(a);
      await this.opts.broker?.setClient(a, undefined);
      this.opts.audit?.setClient(a.sandboxIp, undefined);
      await this.opts.network.tearDown(a);
    }
  }

  async listIds(): Promise<string[]> {
    const ids = new Set<string>();
    for (const { id: container } of await this.opts.runsc.list()) {
      const id = sandboxOfContainer(container);
      ids.add(id);
      // A container the records do not know (a crash between resume's steps) is still found by destroy.
      if (container !== id && !existsSync(this.containerIdFile(id))) this.containers.set(id, container);
    }
    for (const parent of ["sandboxes", "volume-mounts"]) {
      const dirs = await readdir(path.join(this.opts.dataDir, parent)).catch(() => [] as string[]);
      for (const d of dirs) ids.add(d);
    }
    return [...ids];
  }

  listNetSlots(): Promise<number[]> {
    return this.opts.network.existingSlots();
  }

  releaseNetSlot(slot: number): Promise<void> {
    return this.opts.network.tearDown(addressingFor(this.opts.subnet, this.opts.netPrefix, slot));
  }

  async execFallback(id: string, argv: string[], opts?: FallbackExecOptions) {
    return this.opts.runsc.exec(await this.containerOf(id), argv, opts);
  }
}

/** The sandbox a runsc container belongs to: `<id>` and `<id>.<n>` are both the sandbox `<id>`. */
export function sandboxOfContainer(container: string): string {
  return container.replace(/\.\d+$/, "");
}

/** The container a sandbox resumes in place as: the next generation after `current`. */
export function nextContainer(id: string, current: string): string {
  const generation = current === id ? 0 : Number(current.slice(id.length + 1));
  return `${id}.${generation + 1}`;
}
