import type { NetworkPolicy } from "@sandpit/contract";
import type { AgentEndpoint } from "../agent/agent-client.js";
import type { FallbackExecOptions, FallbackExecResult } from "./runsc.js";
import type { VolumeMountSpec } from "./volume-mounts.js";

export interface SandboxLaunchSpec {
  id: string;
  /** Read-only layers of the root filesystem (a template's or an image's), top layer first. */
  layers: string[];
  /** Host directories copied into the sandbox's filesystem before it starts (a source's content). */
  seeds?: RootfsSeed[];
  /** Files (path inside the sandbox, without the leading slash → content) written before it starts. */
  files?: Record<string, string>;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  /** Network slot (addresses and interface names derive from it). */
  netIndex: number;
  agentToken: string;
  /** Host directories bound into the sandbox (volumes); the same ones again when it continues a snapshot. */
  mounts?: VolumeMountSpec[];
  /**
   * The egress policy, applied while the sandbox boots or restores (as `applyNetworkPolicy` would) and in place
   * before the start returns.
   */
  egress?: { target: EgressTarget; policy: NetworkPolicy };
}

export interface RootfsSeed {
  /** Host directory whose content is copied. */
  from: string;
  /** Absolute path inside the sandbox. */
  to: string;
  /** Owner of the copied files inside the sandbox. */
  uid: number;
  gid: number;
}

/** Whose traffic a policy governs: the network slot, and the sandbox and organisation it belongs to. */
export interface EgressTarget {
  netIndex: number;
  sandboxId: string;
  orgId: string;
}

export type SandboxDeathReason = "oom" | "crashed";

export interface RuntimeStatus {
  state: "running" | "stopped" | "missing";
}

/**
 * What Sandpit needs from an isolation technology. GvisorRuntime is the one driver today; a Kubernetes
 * driver would implement the same interface.
 */
export interface SandboxRuntime {
  /** Starts the sandbox and returns once its agent answers. Cleans up after itself when it fails. */
  start(spec: SandboxLaunchSpec): Promise<AgentEndpoint>;
  /**
   * Saves the sandbox's memory and processes and stops it; its filesystem and network stay in place.
   * Resume continues it exactly where it was. With shared storage the saved image is complete there
   * (memory, disk, layer list), so that another node can resume it.
   */
  pause(id: string): Promise<void>;
  /**
   * Continues a paused sandbox: on the node that paused it, or on another one from its image on shared
   * storage (then under `netIndex`, this node's slot, and with the other fields of the spec).
   */
  resume(spec: Omit<SandboxLaunchSpec, "layers" | "seeds" | "files">): Promise<AgentEndpoint>;
  /**
   * For a paused sandbox whose image is on shared storage: the read-only layers it needs that this node
   * lacks (none: it can resume here). Undefined when there is no such image.
   */
  missingLayers(id: string): Promise<string[] | undefined>;
  /** Removes a paused sandbox's image from shared storage: the sandbox is gone for good. */
  discardImage(id: string): Promise<void>;
  /** Copies a paused sandbox into a snapshot directory; returns the snapshot's size in bytes. */
  copySnapshot(id: string, snapshotDir: string): Promise<number>;
  /** Starts a new sandbox that continues a snapshot (processes, memory, files). */
  startFromSnapshot(
    spec: Omit<SandboxLaunchSpec, "layers" | "seeds" | "files">,
    snapshotDir: string,
  ): Promise<AgentEndpoint>;
  /**
   * Copies what a running sandbox wrote to its filesystem (its upper layer, whiteouts included) into
   * `target`, as a read-only layer for templates. Run `sync` inside the sandbox first.
   */
  captureLayer(id: string, target: string): Promise<void>;
  /** Whether a paused sandbox has a complete checkpoint to resume from. */
  hasCheckpoint(id: string): Promise<boolean>;
  /** Applies an egress policy to a running sandbox, atomically and without restarting it. */
  applyNetworkPolicy(target: EgressTarget, policy: NetworkPolicy): Promise<void>;
  /** Where a sandbox's port is reached from the host (for the port proxy). */
  portAddress(spec: Pick<SandboxLaunchSpec, "netIndex">, port: number): { host: string; port: number };
  /** Where the agent of an already running sandbox is reached (after a server restart). */
  agentEndpoint(spec: Pick<SandboxLaunchSpec, "netIndex" | "agentToken">): AgentEndpoint;
  status(id: string): Promise<RuntimeStatus>;
  /** Cheap liveness check, called every second for every running sandbox. */
  alive(id: string): Promise<boolean>;
  /** Why a sandbox that stopped on its own died. Call before destroy (destroy removes the evidence). */
  deathReason(id: string): Promise<SandboxDeathReason>;
  /** Removes the sandbox and everything it held on the host. Idempotent. */
  destroy(id: string, netIndex: number | null): Promise<void>;
  /** Ids of the sandboxes this runtime has on the host, with or without a record. */
  listIds(): Promise<string[]>;
  /** Network slots in use on the host (leftovers included). */
  listNetSlots(): Promise<number[]>;
  /** Removes the network of a slot that no sandbox holds any more. */
  releaseNetSlot(slot: number): Promise<void>;
  /** Runs a command without the agent (fallback when the agent does not answer). */
  execFallback(id: string, argv: string[], opts?: FallbackExecOptions): Promise<FallbackExecResult>;
  /**
   * Raw resource counters of a running sandbox, read on the host; undefined when it is not running.
   * Cumulative counters (CPU time, network bytes) restart when the sandbox is resumed or restored.
   */
  stats(sandbox: Pick<SandboxLaunchSpec, "id" | "netIndex">): Promise<SandboxStats | undefined>;
}

/** What a sandbox uses, as the host sees it. Rates (CPU percent) are for the caller to derive. */
export interface SandboxStats {
  /** CPU time used by all of the sandbox's host threads (gVisor sentry and gofer included), ns. */
  cpuUsageNs: number;
  /** Memory in use: the sandbox's working set (page cache that could be dropped left out), bytes. */
  memoryBytes: number;
  memoryLimitBytes: number;
  /** Space used on the sandbox's writable disk and its size, bytes. */
  diskBytes: number;
  diskLimitBytes: number;
  /** Bytes the sandbox received and sent over its network interface. */
  networkRxBytes: number;
  networkTxBytes: number;
}
