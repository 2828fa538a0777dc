import { type EgressTransform, type NetworkPolicy, REDACTED } from "@sandpit/contract";
import { ApiError } from "../../errors.js";
import type { VercelModePolicy, VercelNetworkPolicyInput, VercelPolicyRule, VercelRulesPolicy } from "./schemas.js";

/** Every IPv4 destination: how `default-allow` lets through traffic to addresses no name resolved to. */
const ANY_ADDRESS = "0.0.0.0/0";
/** Every name, in Sandpit's allow and deny lists. */
const ANY_NAME = "*";
/** How the SDK shows an injected header's value that the server does not return. */
const SDK_REDACTED = "<redacted>";

/** A policy as Vercel's responses show it: the SDK accepts these three modes back. */
export type VercelPolicyView =
  | { mode: "allow-all" }
  | { mode: "deny-all" }
  | {
      mode: "custom";
      allowedDomains?: string[];
      allowedCIDRs?: string[];
      deniedCIDRs?: string[];
      deniedDomains?: string[];
      injectionRules?: { domain: string; headerNames: string[] }[];
    };

function notSupported(field: string, what: string): ApiError {
  return new ApiError("not_implemented", `networkPolicy.${field}: ${what} is not supported by Sandpit`, { field });
}

/** Injected headers are shown as `[redacted]` by Sandpit, `<redacted>` by the SDK: both keep the stored value. */
function keepRedacted(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v === SDK_REDACTED ? REDACTED : v]));
}

function transformFor(domain: string, headers: Record<string, string>, field: string): EgressTransform {
  // Injecting into every domain would send all of the sandbox's web traffic through the egress broker.
  if (domain === ANY_NAME) throw notSupported(field, "header injection for every domain (`*`)");
  return { domain, injectHeaders: keepRedacted(headers), stripHeaders: [] };
}

function fromModePolicy(p: VercelModePolicy): NetworkPolicy {
  if (p.mode === "allow-all" || p.mode === "deny-all") return { mode: p.mode };
  const transforms = (p.injectionRules ?? []).map((r, i) =>
    transformFor(r.domain, r.headers, `injectionRules.${i}.domain`),
  );
  const everything = p.mode === "default-allow";
  return {
    mode: "custom",
    allow: {
      domains: [...(everything ? [ANY_NAME] : []), ...(p.allowedDomains ?? [])],
      cidrs: [...(everything ? [ANY_ADDRESS] : []), ...(p.allowedCIDRs ?? [])],
      ports: [],
    },
    deny: { domains: p.deniedDomains ?? [], cidrs: p.deniedCIDRs ?? [] },
    ...(transforms.length ? { transforms } : {}),
  };
}

/** The SDK's per-domain rules: header transforms are Sandpit's header injection; the rest is refused. */
function transformsOfRules(domain: string, rules: VercelPolicyRule[]): EgressTransform | undefined {
  const headers: Record<string, string> = {};
  for (const [i, rule] of rules.entries()) {
    const field = `allow.${domain}.${i}`;
    if (rule.match) throw notSupported(`${field}.match`, "matching requests by path, method, query or headers");
    if (rule.forwardURL !== undefined) throw notSupported(`${field}.forwardURL`, "forwarding requests");
    if (rule.response) throw notSupported(`${field}.response`, "answering requests from the policy");
    for (const t of rule.transform ?? []) Object.assign(headers, t.headers ?? {});
  }
  return Object.keys(headers).length ? transformFor(domain, headers, `allow.${domain}`) : undefined;
}

function fromRulesPolicy(p: VercelRulesPolicy): NetworkPolicy {
  const transforms: EgressTransform[] = [];
  let domains: string[] = [];
  if (Array.isArray(p.allow)) domains = p.allow;
  else if (p.allow) {
    domains = Object.keys(p.allow);
    for (const [domain, rules] of Object.entries(p.allow)) {
      const t = transformsOfRules(domain, rules);
      if (t) transforms.push(t);
    }
  }
  return {
    mode: "custom",
    allow: { domains, cidrs: p.subnets?.allow ?? [], ports: [] },
    deny: { domains: [], cidrs: p.subnets?.deny ?? [] },
    ...(transforms.length ? { transforms } : {}),
  };
}

/**
 * A Vercel network policy as Sandpit's egress policy (validated by the contract afterwards). `custom` and
 * `default-deny` allow what is listed; `default-allow` allows every name (`*`) and address
 * (`0.0.0.0/0`) and denies what is listed — denied entries win, as in Vercel.
 */
export function toSandpitPolicy(policy: VercelNetworkPolicyInput): NetworkPolicy {
  return "mode" in policy ? fromModePolicy(policy as VercelModePolicy) : fromRulesPolicy(policy);
}

/**
 * A Sandpit egress policy as Vercel's responses show it (`custom` for any list-based policy). Empty
 * lists are left out, so that the SDK shows `{allow: [...]}` back as it was given.
 */
export function toVercelPolicy(policy: NetworkPolicy): VercelPolicyView {
  if (policy.mode !== "custom") return { mode: policy.mode };
  const list = (key: string, values: string[]) => (values.length ? { [key]: values } : {});
  return {
    mode: "custom",
    ...list("allowedDomains", policy.allow.domains),
    ...list("allowedCIDRs", policy.allow.cidrs),
    ...list("deniedCIDRs", policy.deny.cidrs),
    ...list("deniedDomains", policy.deny.domains),
    ...(policy.transforms?.length
      ? {
          injectionRules: policy.transforms.map((t) => ({
            domain: t.domain,
            headerNames: Object.keys(t.injectHeaders),
          })),
        }
      : {}),
  };
}
