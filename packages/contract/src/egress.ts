import { z } from "zod";
import { timestampSchema } from "./common.js";

export const egressLogEntrySchema = z.object({
  seq: z.number().int().describe("Increasing; pass as ?after= to continue from here"),
  sandboxId: z.string(),
  at: timestampSchema,
  protocol: z.enum(["tcp", "udp", "icmp", "http", "https", "dns"]),
  ip: z.string().nullable(),
  port: z.number().int().nullable(),
  domain: z.string().nullable().describe("From the sandbox's DNS answers, or SNI/Host for brokered requests"),
  decision: z.enum(["allowed", "denied"]),
  rule: z
    .string()
    .describe(
      "What decided: mode.allow-all, allow.cidr, allow.domain, allow.dns-admitted, transform, deny.cidr, " +
        "policy.default-deny, policy.domain, mode.deny-all, always-blocked, host, broker.*",
    ),
  bytesOut: z.number().int().nullable(),
  bytesIn: z.number().int().nullable(),
  detail: z.string().nullable(),
});
export type EgressLogEntry = z.infer<typeof egressLogEntrySchema>;

export const egressLogQuerySchema = z.object({
  sandboxId: z.string().optional(),
  since: z.string().datetime({ offset: true }).optional().describe("RFC 3339 time"),
  decision: z.enum(["allowed", "denied"]).optional(),
  after: z.coerce.number().int().min(0).optional().describe("Only entries with a larger seq"),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  follow: z.enum(["true", "false"]).default("false").describe("Keep streaming new entries as NDJSON"),
});

export const egressLogResponseSchema = z.object({ entries: z.array(egressLogEntrySchema) });
