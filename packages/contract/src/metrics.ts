import { z } from "zod";
import { timestampSchema } from "./common.js";

const bytes = z.number().int().min(0);

/** One reading of a sandbox's resource use. */
export const metricsSampleSchema = z.object({
  at: timestampSchema,
  cpuPercent: z
    .number()
    .min(0)
    .max(100)
    .describe(
      "CPU used since the previous sample, as a percent of the sandbox's vCPUs (100 = every vCPU busy); " +
        "gVisor's own threads count",
    ),
  memoryBytes: bytes.describe("Memory in use (working set: the sandbox's memory cgroup without inactive file cache)"),
  memoryLimitBytes: bytes.describe("The sandbox's memory limit"),
  diskBytes: bytes.describe("Space used on the sandbox's writable disk (files written; /tmp is memory)"),
  diskLimitBytes: bytes.describe("Size of the sandbox's writable disk"),
  networkRxBytes: bytes.describe("Bytes the sandbox received since it started or was last resumed"),
  networkTxBytes: bytes.describe("Bytes the sandbox sent since it started or was last resumed"),
  processes: z
    .number()
    .int()
    .min(0)
    .nullable()
    .describe("Processes inside the sandbox (Sandpit's agent included); null when the agent did not answer"),
});
export type MetricsSample = z.infer<typeof metricsSampleSchema>;

export const sandboxMetricsQuerySchema = z.object({
  since: z.string().datetime({ offset: true }).optional().describe("Only samples taken after this RFC 3339 time"),
});

export const sandboxMetricsSchema = z.object({
  sandboxId: z.string(),
  intervalMs: z.number().int().positive().describe("Time between samples"),
  samples: z
    .array(metricsSampleSchema)
    .describe("Oldest first; the last 10 minutes while the sandbox runs (kept while it is paused)"),
});
export type SandboxMetrics = z.infer<typeof sandboxMetricsSchema>;
