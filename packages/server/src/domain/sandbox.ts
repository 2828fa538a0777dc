import type { DesktopSettings, NetworkPolicy, SandboxStatus } from "@sandpit/contract";

export interface SandboxRecord {
  id: string;
  orgId: string;
  /** The node it lives on (its processes, disk and network slot are there). */
  nodeId: string;
  status: SandboxStatus;
  reason: string | null;
  template: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  env: Record<string, string>;
  metadata: Record<string, string>;
  cwd: string;
  timeoutMs: number;
  networkPolicy: NetworkPolicy;
  timeoutAction: "destroy" | "pause";
  lifecycle: "ephemeral" | "persistent";
  idleTimeoutMs: number | null;
  autoResume: boolean;
  /**
   * Hibernated after the server's quiet period without API activity (paused; its next call resumes it);
   * false keeps it running while idle (background work that must not stop).
   */
  hibernate: boolean;
  ports: number[];
  /** Every port is reachable through the proxy, not only `ports`. */
  allPorts: boolean;
  publicPorts: boolean;
  trafficToken: string;
  /** Slot of the sandbox's veth pair; null once its network is released. */
  netIndex: number | null;
  agentToken: string;
  /** Default user of commands (name or uid); null runs them as root. */
  user: string | null;
  /** The background command started from the image's or request's entrypoint at create. */
  mainCommandId: string | null;
  /** Volumes and host directories mounted into the sandbox; kept for resume, restart and snapshots. */
  volumes: SandboxVolumeRecord[];
  /** Its virtual display (started with it by the desktop server); null: no desktop. */
  desktop: SandboxDesktop | null;
  createdAt: number;
  startedAt: number | null;
  expiresAt: number | null;
  destroyedAt: number | null;
}

/**
 * One mount of a sandbox as recorded: a named volume by id (a volume deleted and made again under the
 * same name is another volume), or a host directory.
 */
export interface SandboxVolumeRecord {
  volumeId?: string;
  /** The volume's name when it was mounted (for display). */
  name?: string;
  hostPath?: string;
  mountPath: string;
  readOnly: boolean;
  subPath?: string;
}

export interface CommandRecord {
  id: string;
  sandboxId: string;
  argv: string[];
  cwd: string;
  background: boolean;
  status: "running" | "exited" | "killed" | "lost";
  pid: number | null;
  exitCode: number | null;
  timedOut: boolean;
  startedAt: number;
  finishedAt: number | null;
}

/** A sandbox's desktop: the display's settings, and who starts the display. */
export interface SandboxDesktop extends DesktopSettings {
  /**
   * The client starts the display itself (`@e2b/desktop` runs its own Xvfb and Xfce): Sandpit's desktop
   * server is not started with the sandbox but on the first desktop call, and then adopts that display.
   */
  startedByClient?: boolean;
}
