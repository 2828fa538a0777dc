import type { NetworkPolicy } from "@sandpit/contract";
import type { SandboxDesktop, SandboxVolumeRecord } from "./sandbox.js";

export interface SnapshotRecord {
  id: string;
  orgId: string;
  name: string | null;
  sourceSandboxId: string;
  /** The node that took it (absent in snapshots taken before nodes existed). */
  nodeId?: string;
  status: "creating" | "ready" | "failed";
  template: string;
  vcpus: number;
  memoryMb: number;
  diskMb: number;
  env: Record<string, string>;
  cwd: string;
  /** Default user of commands in the source (absent in snapshots taken before users existed). */
  user?: string | null;
  networkPolicy: NetworkPolicy;
  /** The agent inside the snapshot was started with this token; its children keep it. */
  agentToken: string;
  /** What the source mounted; its children mount the same (absent in snapshots taken before volumes). */
  volumes?: SandboxVolumeRecord[];
  /** The source's desktop; its children continue it (absent in snapshots taken before desktops). */
  desktop?: SandboxDesktop | null;
  sizeBytes: number | null;
  createdAt: number;
}
