import { describe, expect, it } from "vitest";
import { addressingFor } from "./addressing.js";
import { dnsDecision, domainMatches, egressRules, removeEgressRules } from "./egress-rules.js";

const a = addressingFor("10.231.0.0", "sp", 3);

describe("domain patterns", () => {
  it("matches exact names and wildcard subdomains, not the apex", () => {
    expect(domainMatches("pypi.org", "pypi.org")).toBe(true);
    expect(domainMatches("PyPI.org.", "pypi.org")).toBe(true);
    expect(domainMatches("files.pypi.org", "pypi.org")).toBe(false);
    expect(domainMatches("api.github.com", "*.github.com")).toBe(true);
    expect(domainMatches("a.b.github.com", "*.github.com")).toBe(true);
    expect(domainMatches("github.com", "*.github.com")).toBe(false);
    expect(domainMatches("evilgithub.com", "*.github.com")).toBe(false);
  });

  it("lets deny win over allow", () => {
    const policy = {
      mode: "custom" as const,
      allow: { domains: ["*.example.com"], cidrs: [], ports: [] },
      deny: { domains: ["bad.example.com"], cidrs: [] },
    };
    expect(dnsDecision(policy, "good.example.com")).toBe("forward");
    expect(dnsDecision(policy, "bad.example.com")).toBe("refuse");
    expect(dnsDecision(policy, "other.org")).toBe("refuse");
    expect(dnsDecision({ mode: "allow-all" }, "anything.org")).toBe("forward");
    expect(dnsDecision({ mode: "deny-all" }, "anything.org")).toBe("refuse");
  });

  it("lets `*` allow every name, while denied names stay refused", () => {
    const policy = {
      mode: "custom" as const,
      allow: { domains: ["*"], cidrs: ["0.0.0.0/0"], ports: [] },
      deny: { domains: ["*.blocked.test"], cidrs: [] },
    };
    expect(dnsDecision(policy, "any.where.org")).toBe("forward");
    expect(dnsDecision(policy, "x.blocked.test")).toBe("refuse");
  });
});

describe("nftables rules", () => {
  it("renders a custom policy as one transaction: deny first, ports on allowed destinations", () => {
    const rules = egressRules("sandpit_sp", a, {
      mode: "custom",
      allow: { domains: ["x.org"], cidrs: ["1.2.3.0/24"], ports: [443, 80] },
      deny: { domains: [], cidrs: ["1.2.3.4"] },
    });
    const lines = rules.trim().split("\n");
    expect(lines).toContain("flush chain inet sandpit_sp sb3");
    expect(lines).toContain("add element inet sandpit_sp sb3_allow { 1.2.3.0/24 }");
    expect(lines).toContain("add element inet sandpit_sp sb3_deny { 1.2.3.4 }");
    const deny = lines.findIndex((l) => l.includes("@sb3_deny"));
    const allow = lines.findIndex((l) =>
      l.includes("@sb3_allow meta l4proto { tcp, udp } th dport { 443, 80 } accept"),
    );
    // The first packet of an allowed connection is logged under the rule that allowed it.
    expect(lines[allow - 1]).toContain(
      'ct state new limit rate 50/second burst 100 packets log prefix "sandpit_sp:allow.cidr "',
    );
    expect(deny).toBeGreaterThan(-1);
    expect(lines[deny]).toContain('log prefix "sandpit_sp:deny.cidr "');
    expect(lines.some((l) => l.endsWith('log prefix "sandpit_sp:policy.default-deny " level info'))).toBe(true);
    expect(allow).toBeGreaterThan(deny);
    expect(lines).toContain('add element inet sandpit_sp egress { "sph3" : jump sb3 }');
    expect(lines).not.toContain('delete element inet sandpit_sp dns_clients { "sph3" }');
  });

  it("takes DNS away from deny-all sandboxes and removes everything on teardown", () => {
    const rules = egressRules("t", a, { mode: "deny-all" });
    expect(rules).toContain('delete element inet t dns_clients { "sph3" }');
    expect(rules).toContain("add rule inet t sb3 reject");
    // Denied attempts are logged with the rule's name, before the reject.
    expect(rules.indexOf('log prefix "t:mode.deny-all "')).toBeLessThan(rules.indexOf("add rule inet t sb3 reject"));
    const removal = removeEgressRules("t", a);
    expect(removal).toContain("delete chain inet t sb3");
    expect(removal).toContain('delete element inet t egress { "sph3" }');
    expect(removal).toContain('delete element inet t brokered { "sph3" }');
  });

  it("lets only sandboxes with transforms reach the egress broker", () => {
    const transforms = [{ domain: "api.test", injectHeaders: { authorization: "x" }, stripHeaders: [] }];
    const brokered = egressRules("t", a, { mode: "allow-all", transforms }).trim().split("\n");
    expect(brokered).toContain('add element inet t brokered { "sph3" }');
    expect(brokered).not.toContain('delete element inet t brokered { "sph3" }');
    for (const policy of [{ mode: "allow-all" as const }, { mode: "deny-all" as const }]) {
      const lines = egressRules("t", a, policy).trim().split("\n");
      // Added then deleted: the delete is safe whether or not the sandbox was brokered before.
      expect(lines.indexOf('delete element inet t brokered { "sph3" }')).toBeGreaterThan(
        lines.indexOf('add element inet t brokered { "sph3" }'),
      );
    }
  });
});
