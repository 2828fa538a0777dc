import { absolutePathSchema, cidrSchema, envSchema, metadataSchema, portSchema } from "@sandpit/contract";
import { z } from "zod";
import { egressProblems, parseDuration, SECOND, SIZE_NAMES, ZWRM_LIMITS } from "./mapping.js";

const DURATION_HINT = "must be a duration such as 30s, 5m or 1h";
const required = (what: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? "is required" : `must be ${what}`),
});

/** A duration string in milliseconds, within [min, max]. */
function durationSchema(bounds: { min: number; max: number; maxText: string }) {
  return z.string().transform((raw, ctx) => {
    const ms = parseDuration(raw);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: DURATION_HINT });
      return z.NEVER;
    }
    if (ms < bounds.min) ctx.addIssue({ code: "custom", message: `must be at least ${bounds.min / SECOND}s` });
    if (ms > bounds.max) ctx.addIssue({ code: "custom", message: `must be at most ${bounds.maxText}` });
    return ms;
  });
}

/** ZWRM's outbound firewall policy. */
export const egressSchema = z
  .strictObject({
    mode: z.enum(["allow_all", "deny_all"], required("allow_all or deny_all")),
    allow_cidrs: z.array(cidrSchema).max(256).optional(),
    deny_cidrs: z.array(cidrSchema).max(256).optional(),
    allow_ports: z.array(portSchema).max(64).optional(),
  })
  .superRefine((egress, ctx) => {
    for (const problem of egressProblems(egress)) ctx.addIssue({ code: "custom", ...problem });
  });
export type ZwrmEgress = z.input<typeof egressSchema>;

/** `POST /v1/sandboxes`, as ZWRM documents it. */
export const createSandboxSchema = z
  .strictObject({
    template: z.string(required("a template name or ID")).min(1),
    mode: z.enum(["ephemeral", "persistent"], required("ephemeral or persistent")).default("ephemeral"),
    timeout: durationSchema({ min: SECOND, max: ZWRM_LIMITS.sandboxTimeoutMs.max, maxText: "24h" }).optional(),
    idle_timeout: durationSchema({ min: SECOND, max: ZWRM_LIMITS.idleTimeoutMs.max, maxText: "24h" }).optional(),
    size: z.enum(SIZE_NAMES, required(`one of ${SIZE_NAMES.join(", ")}`)).default("shared-cpu-1x"),
    env: envSchema.default({}),
    metadata: metadataSchema.default({}),
    egress: egressSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.timeout !== undefined && body.mode !== "ephemeral") {
      ctx.addIssue({ code: "custom", path: ["timeout"], message: "is only for mode ephemeral" });
    }
    if (body.idle_timeout !== undefined && body.mode !== "persistent") {
      ctx.addIssue({ code: "custom", path: ["idle_timeout"], message: "is only for mode persistent" });
    }
  });
export type ZwrmCreateSandbox = z.output<typeof createSandboxSchema>;

/**
 * Keepalive: a new timeout from now. Over 24h is clamped to 24h, as ZWRM does; without a timeout the
 * sandbox's own timeout starts again.
 */
export const keepaliveSchema = z
  .strictObject({
    timeout: z
      .string()
      .transform((raw, ctx) => {
        const ms = parseDuration(raw);
        if (ms === undefined || ms < SECOND) {
          ctx.addIssue({ code: "custom", message: ms === undefined ? DURATION_HINT : "must be at least 1s" });
          return z.NEVER;
        }
        return Math.min(ms, ZWRM_LIMITS.sandboxTimeoutMs.max);
      })
      .optional(),
  })
  .nullish();

/** `POST /v1/sandboxes/{id}/exec`. */
export const execSchema = z.strictObject({
  command: z.string(required("a string")).min(1, "is required"),
  timeout: durationSchema({ min: 1, max: ZWRM_LIMITS.execTimeoutMs.max, maxText: "5m" }).optional(),
  workdir: absolutePathSchema.optional(),
  env: envSchema.optional(),
});

export const listQuerySchema = z.object({
  status: z.enum(["creating", "running", "suspended", "destroyed"]).optional(),
});

export const filePathQuerySchema = z.object({ path: z.string().optional() });

export type ZwrmStatus = "creating" | "running" | "suspended" | "destroyed";

/** The sandbox ZWRM answers with. */
export interface ZwrmSandbox {
  id: string;
  template: string;
  mode: "ephemeral" | "persistent";
  status: ZwrmStatus;
  size: string | null;
  vcpus: number;
  memory_mb: number;
  timeout_seconds: number | null;
  idle_timeout_seconds: number | null;
  expires_at: string | null;
  metadata: Record<string, string>;
  egress: ZwrmEgress;
  created_at: string;
  started_at: string | null;
  destroyed_at: string | null;
}

/** ZWRM's error body. */
export interface ZwrmErrorBody {
  error: string;
  code: string;
  fields?: { field: string; message: string }[];
}
