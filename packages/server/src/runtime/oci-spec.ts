import type { StagedMount } from "./volume-mounts.js";

/** The subset of the OCI runtime spec Sandpit writes for runsc. */
export interface OciSpecInput {
  rootfs: string;
  hostname: string;
  args: string[];
  env: string[];
  cgroupsPath: string;
  netnsPath: string;
  vcpus: number;
  memoryBytes: number;
  pidsLimit: number;
  /** Host directories bound into the sandbox (staged volumes). */
  mounts?: StagedMount[];
}

/** What commands run with as root: the default set of container runtimes. */
export const commandCapabilities = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_RAW",
  "CAP_SYS_CHROOT",
  "CAP_MKNOD",
  "CAP_AUDIT_WRITE",
  "CAP_SETFCAP",
];

/**
 * The agent's capabilities. CAP_SYS_ADMIN is for the agent alone: its guest init mounts the guest's /proc
 * with it, then drops it from its bounding set before the server or any command runs.
 */
const capabilities = [...commandCapabilities, "CAP_SYS_ADMIN"];

export function ociSpec(input: OciSpecInput) {
  const period = 100_000;
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: input.args,
      env: input.env,
      cwd: "/",
      capabilities: {
        bounding: capabilities,
        effective: capabilities,
        permitted: capabilities,
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1_048_576, soft: 1_048_576 }],
    },
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
      // runsc's `ro` makes writes fail with EROFS inside; the staged host mount is read-only as well.
      ...(input.mounts ?? []).map((m) => ({
        destination: m.destination,
        type: "bind",
        source: m.source,
        options: ["bind", m.readOnly ? "ro" : "rw"],
      })),
    ],
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources: {
        memory: { limit: input.memoryBytes },
        cpu: { quota: input.vcpus * period, period },
        pids: { limit: input.pidsLimit },
      },
      namespaces: [
        { type: "pid" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "network", path: input.netnsPath },
      ],
    },
  };
}
