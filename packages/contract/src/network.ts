import { z } from "zod";

const IPV4_CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(\/([0-9]|[12]\d|3[0-2]))?$/;
/** A domain name or a wildcard pattern `*.example.com` (matches subdomains at any depth, not the apex). */
const DOMAIN_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const cidrSchema = z.string().regex(IPV4_CIDR, "must be an IPv4 address or CIDR such as 10.0.0.0/8");
export const domainPatternSchema = z
  .string()
  .max(253)
  .transform((d) => d.toLowerCase().replace(/\.$/, ""))
  .pipe(z.string().regex(DOMAIN_PATTERN, "must be a domain name or a wildcard such as *.example.com"));
export const portSchema = z.number().int().min(1).max(65_535);
/** An entry of a policy's allow or deny list: a domain pattern, or `*` for every name. */
export const domainRuleSchema = z.union([z.literal("*"), domainPatternSchema]);

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;

/**
 * Requests from the sandbox to `domain` (HTTP, and HTTPS through Sandpit's egress broker) get headers
 * injected and stripped on the way out; the sandbox never sees the injected values. In responses the
 * values read `[redacted]`.
 */
export const egressTransformSchema = z.strictObject({
  domain: domainPatternSchema,
  injectHeaders: z
    .record(
      z.string().regex(HEADER_NAME, "must be an HTTP header name"),
      z
        .string()
        .max(8192)
        .refine((v) => !/[\r\n\0]/.test(v), "must not contain line breaks"),
    )
    .refine((h) => Object.keys(h).length <= 32, "at most 32 headers")
    .default({}),
  stripHeaders: z.array(z.string().regex(HEADER_NAME, "must be an HTTP header name")).max(32).default([]),
});
export type EgressTransform = z.output<typeof egressTransformSchema>;
export const REDACTED = "[redacted]";

const transformsSchema = z
  .array(egressTransformSchema)
  .max(64)
  .optional()
  .describe("Header injection/stripping for requests to these domains (credential brokering)");

export const networkPolicySchema = z.discriminatedUnion("mode", [
  z.strictObject({ mode: z.literal("allow-all"), transforms: transformsSchema }),
  z.strictObject({ mode: z.literal("deny-all"), transforms: transformsSchema }),
  z.strictObject({
    mode: z.literal("custom"),
    transforms: transformsSchema,
    allow: z
      .strictObject({
        domains: z.array(domainRuleSchema).max(256).default([]),
        cidrs: z.array(cidrSchema).max(256).default([]),
        ports: z.array(portSchema).max(64).default([]).describe("When set, allowed destinations only on these ports"),
      })
      .prefault({}),
    deny: z
      .strictObject({
        domains: z.array(domainRuleSchema).max(256).default([]),
        cidrs: z.array(cidrSchema).max(256).default([]),
      })
      .prefault({}),
  }),
]);
export type NetworkPolicy = z.output<typeof networkPolicySchema>;
export type NetworkPolicyInput = z.input<typeof networkPolicySchema>;

export const exposedPortSchema = z.object({
  port: z.number().int(),
  url: z.string().describe("Path-based URL on the API host"),
  hostUrl: z.string().nullable().describe("Host-based URL, when SANDPIT_DOMAIN is configured"),
});
export type ExposedPort = z.infer<typeof exposedPortSchema>;
export const listPortsResponseSchema = z.object({
  ports: z.array(exposedPortSchema),
  public: z.boolean(),
  trafficTokenHeader: z.string(),
});

/** A policy as the API shows it: injected header values replaced by `[redacted]`. */
export function redactPolicy(policy: NetworkPolicy): NetworkPolicy {
  if (!policy.transforms?.length) return policy;
  return {
    ...policy,
    transforms: policy.transforms.map((t) => ({
      ...t,
      injectHeaders: Object.fromEntries(Object.keys(t.injectHeaders).map((k) => [k, REDACTED])),
    })),
  };
}
