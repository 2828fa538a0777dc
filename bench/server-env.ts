/**
 * Server settings for benchmarks that hold many idle sandboxes: idle sandboxes use a fraction of what
 * they are given, so the node's capacity check (overcommit 8 CPU / 1 memory by default: ~16 sandboxes of
 * 1 vCPU / 1 GB on a 2-core, 24 GiB host) would refuse them long before the host is busy.
 */
export const ROOMY = {
  SANDPIT_OVERCOMMIT_CPU: "1000",
  SANDPIT_OVERCOMMIT_MEMORY: "100",
  SANDPIT_OVERCOMMIT_DISK: "100",
};
