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

export const networkPolicySchema = z.discriminatedUnion("mode", [
  z.strictObject({ mode: z.literal("allow-all") }),
  z.strictObject({ mode: z.literal("deny-all") }),
  z.strictObject({
    mode: z.literal("custom"),
    allow: z
      .strictObject({
        domains: z.array(domainPatternSchema).max(256).default([]),
        cidrs: z.array(cidrSchema).max(256).default([]),
        ports: z.array(portSchema).max(64).default([]).describe("When set, allowed destinations only on these ports"),
      })
      .prefault({}),
    deny: z
      .strictObject({
        domains: z.array(domainPatternSchema).max(256).default([]),
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
export const listPortsResponseSchema = z.object({
  ports: z.array(exposedPortSchema),
  public: z.boolean(),
  trafficTokenHeader: z.string(),
});
