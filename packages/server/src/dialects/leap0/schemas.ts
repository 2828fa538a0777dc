import { cidrSchema, domainPatternSchema, envSchema, templateNameSchema } from "@sandpit/contract";
import { z } from "zod";

/** Leap0's bounds, as its document states them. */
export const LEAP0_LIMITS = {
  vcpu: { min: 1, max: 8 },
  memoryMib: { min: 512, max: 8192 },
  timeoutMin: { min: 1, max: 480, default: 5 },
  allowDomains: 50,
  allowCidrs: 10,
  transforms: 20,
} as const;

/** "is required" for a missing field, else `must be …`. */
const typed = (what: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? "is required" : `must be ${what}`),
});

const boundedInt = (min: number, max: number) =>
  z
    .number(typed("an integer"))
    .int("must be an integer")
    .min(min, `must be at least ${min}`)
    .max(max, `must be at most ${max}`);

/** A per-domain request transform: credential brokering by header injection and stripping. */
export const transformSchema = z.strictObject({
  domain: z.string(typed("a domain pattern")).pipe(domainPatternSchema),
  inject_headers: z.record(z.string(), z.string(typed("a string"))).optional(),
  strip_headers: z.array(z.string(typed("a string"))).optional(),
});

export const networkPolicySchema = z
  .strictObject({
    mode: z.enum(["allow-all", "deny-all", "custom"], typed("one of allow-all, deny-all, custom")),
    allow_domains: z
      .array(domainPatternSchema)
      .max(LEAP0_LIMITS.allowDomains, `must have at most ${LEAP0_LIMITS.allowDomains} items`)
      .optional(),
    allow_cidrs: z
      .array(cidrSchema)
      .max(LEAP0_LIMITS.allowCidrs, `must have at most ${LEAP0_LIMITS.allowCidrs} items`)
      .optional(),
    transforms: z
      .array(transformSchema)
      .max(LEAP0_LIMITS.transforms, `must have at most ${LEAP0_LIMITS.transforms} items`)
      .optional(),
  })
  .superRefine((policy, ctx) => {
    for (const list of ["allow_domains", "allow_cidrs"] as const) {
      if (policy[list] !== undefined && policy.mode !== "custom") {
        ctx.addIssue({ code: "custom", path: [list], message: "is only allowed in custom mode" });
      }
    }
  });
export type Leap0NetworkPolicy = z.input<typeof networkPolicySchema>;

/** `POST /v1/sandbox/`, as Leap0 documents it. */
export const createSandboxSchema = z.strictObject({
  template_name: z.string(typed("a template name")).pipe(templateNameSchema),
  env_vars: envSchema.optional(),
  vcpu: boundedInt(LEAP0_LIMITS.vcpu.min, LEAP0_LIMITS.vcpu.max),
  memory_mib: boundedInt(LEAP0_LIMITS.memoryMib.min, LEAP0_LIMITS.memoryMib.max).refine(
    (m) => m % 2 === 0,
    "must be an even number",
  ),
  timeout_min: boundedInt(LEAP0_LIMITS.timeoutMin.min, LEAP0_LIMITS.timeoutMin.max).default(
    LEAP0_LIMITS.timeoutMin.default,
  ),
  auto_pause: z.boolean(typed("a boolean")).default(false),
  network_policy: networkPolicySchema.optional(),
});
export type Leap0CreateSandbox = z.output<typeof createSandboxSchema>;

export const leap0States = [
  "starting",
  "running",
  "snapshotting",
  "paused",
  "unpausing",
  "deleting",
  "deleted",
] as const;
export type Leap0State = (typeof leap0States)[number];

/** `GET /v1/sandboxes`: state filter, sorting and pages. */
export const listQuerySchema = z.object({
  state: z.enum(leap0States).optional(),
  sort: z.enum(["created_at", "state"]).default("created_at"),
  "order-by": z.enum(["asc", "desc"]).default("desc"),
  page: z.coerce.number().int().min(1).default(1),
  "page-size": z.coerce.number().int().min(1).max(100).default(20),
});
export type Leap0ListQuery = z.output<typeof listQuerySchema>;

/** The sandbox Leap0 answers with. */
export interface Leap0Sandbox {
  id: string;
  template_id: string;
  vcpu: number;
  memory_mib: number;
  disk_mib: number;
  state: Leap0State;
  auto_pause: boolean;
  network_policy: Leap0NetworkPolicy;
  created_at: string;
}

/** Leap0's error bodies: validation errors list each field, the others carry a message only. */
export type Leap0ErrorBody = { message: string; errors: { field: string; error: string }[] } | { message: string };
