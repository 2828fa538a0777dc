import { describe, expect, it } from "vitest";
import { classifyAddress } from "./address-policy.js";
import { formatIpAddress, parseIpAddress, parseIpPrefix, prefixContains } from "./ip-address.js";
import { OutboundBlockedError, OutboundGuard, type OutboundGuardOptions } from "./outbound-guard.js";

/** DNS answers of made-up names (no network in unit tests). */
const DNS: Record<string, string[]> = {
  "public.example": ["1.1.1.1", "2606:4700::1111"],
  "rebind.example": ["1.1.1.1", "127.0.0.1"],
  "mapped.example": ["::ffff:127.0.0.1"],
  "nat64.example": ["64:ff9b::a9fe:a9fe"],
  "metadata.example": ["169.254.169.254"],
  "host-itself.example": ["93.184.216.34"],
  "sandbox.example": ["44.10.3.2"],
  localhost: ["127.0.0.1", "::1"],
  "git.internal": ["10.0.0.7"],
};

function guard(overrides: Partial<OutboundGuardOptions> = {}) {
  return new OutboundGuard({
    allowedHosts: [],
    // A sandbox subnet in public space: refused because it is the sandboxes', not because it is private.
    sandboxSubnet: "44.10.0.0",
    hostAddresses: () => ["127.0.0.1", "::1", "93.184.216.34", "2a00:1450:4001::7"],
    resolve: async (name) => {
      const answers = DNS[name];
      if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" });
      return answers.map((address) => ({ address }));
    },
    ...overrides,
  });
}

/** What happens to a URL as an attacker would submit it: parsed by WHATWG URL first, then the guard. */
async function attempt(g: OutboundGuard, text: string): Promise<"unparseable" | "refused" | string> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "unparseable";
  }
  try {
    return (await g.resolve(url)).address;
  } catch (e) {
    if (e instanceof OutboundBlockedError) return "refused";
    throw e;
  }
}

describe("outbound guard", () => {
  const refused = [
    // IPv4-mapped loopback in every spelling.
    "http://[::ffff:127.0.0.1]:8080/x.tar",
    "http://[::ffff:7f00:1]:8080/x.tar",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://[0000:0000:0000:0000:0000:FFFF:7F00:0001]/",
    "http://[::FFFF:127.0.0.1]/",
    // SIIT, IPv4-compatible, NAT64 (well-known and local-use), 6to4, Teredo.
    "http://[::ffff:0:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[::7f00:1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b:1::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    // IPv6 loopback, unspecified, link-local (with a zone id), ULA, site-local, multicast, documentation.
    "http://[::1]/",
    "http://[0::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25lo]/",
    "http://[fe80::1%lo]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[3fff::1]/",
    // IPv4 loopback and unspecified in the spellings inet_aton accepts.
    "http://127.0.0.1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://2130706433/",
    "http://127.0.0.1./",
    "http://0/",
    "http://0.0.0.0/",
    "http://%31%32%37.0.0.1/",
    "http://１２７.０.０.１/",
    // Loopback names.
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST/",
    "http://LocalHost:3000/",
    "http://anything.localhost/",
    // Cloud metadata, directly and embedded.
    "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:169.254.169.254]/",
    "http://100.100.100.200/",
    "http://[fd00:ec2::254]/",
    // Private, CGNAT, special-purpose, multicast, reserved, broadcast.
    "http://10.0.0.1/",
    "http://[::ffff:10.231.0.2]:3000/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://192.0.0.170/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://198.19.255.255/",
    "http://198.51.100.1/",
    "http://203.0.113.1/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    // The sandbox subnet (configured in public space here) and the host's own public addresses.
    "http://44.10.3.2:49983/",
    "http://[::ffff:44.10.3.2]:49983/",
    "http://[::ffff:2c0a:302]/",
    "http://93.184.216.34/",
    "http://[::ffff:5db8:d822]/",
    "http://[2a00:1450:4001::7]/",
    // Names whose answers include a non-public address (every answer counts), or that do not resolve.
    "http://rebind.example/",
    "http://mapped.example/",
    "http://nat64.example/",
    "http://metadata.example/",
    "http://host-itself.example/",
    "http://sandbox.example/",
    "http://git.internal/",
    "http://does-not-exist.example/",
    // Only http(s).
    "ftp://1.1.1.1/",
    "file:///etc/passwd",
    "gopher://1.1.1.1/",
  ];
  for (const text of refused) {
    it(`refuses ${text}`, async () => {
      expect(["unparseable", "refused"]).toContain(await attempt(guard(), text));
    });
  }

  it("lets public addresses through, pinned to the checked address", async () => {
    const g = guard();
    expect(await attempt(g, "https://1.1.1.1/x.tar")).toBe("1.1.1.1");
    expect(await attempt(g, "https://[2606:4700::1111]/")).toBe("2606:4700::1111");
    expect(await attempt(g, "http://[::ffff:1.1.1.1]/")).toBe("::ffff:101:101");
    expect(await attempt(g, "http://[64:ff9b::1.1.1.1]/")).toBe("64:ff9b::101:101");
    expect(await attempt(g, "http://44.11.0.1/")).toBe("44.11.0.1");
    expect(await g.resolve(new URL("https://public.example:8443/a"))).toEqual({
      hostname: "public.example",
      port: 8443,
      address: "1.1.1.1",
      family: 4,
    });
  });

  it("lets an admin's hosts through as written, and nothing else on the same address", async () => {
    const g = guard({ allowedHosts: ["127.0.0.1:5000", "localhost", "git.internal"] });
    expect(await attempt(g, "http://127.0.0.1:5000/v2/")).toBe("127.0.0.1");
    expect(await attempt(g, "http://localhost:8080/")).toBe("127.0.0.1");
    expect(await attempt(g, "http://git.internal/repo.git")).toBe("10.0.0.7");
    expect(await attempt(g, "http://127.0.0.1:5001/")).toBe("refused");
    expect(await attempt(g, "http://[::ffff:7f00:1]:5000/")).toBe("refused");
    expect(await attempt(g, "http://[::1]:5000/")).toBe("refused");
    expect(await attempt(g, "http://mapped.example:5000/")).toBe("refused");
    // IPv6 entries bare or bracketed, with or without a port.
    const v6 = guard({ allowedHosts: ["[::1]:5000", "fd00::7"] });
    expect(await attempt(v6, "http://[::1]:5000/")).toBe("::1");
    expect(await attempt(v6, "http://[::1]:5001/")).toBe("refused");
    expect(await attempt(v6, "http://[fd00::7]:8080/")).toBe("fd00::7");
  });

  it("says the same about every refused address, whatever its port", async () => {
    const messages = await Promise.all(
      ["http://127.0.0.1:1/", "http://127.0.0.1:8080/", "http://127.0.0.1:49983/"].map((u) =>
        guard()
          .resolve(new URL(u))
          .then(
            () => "",
            (e: Error) => e.message.replace(/:\d+/, ":PORT"),
          ),
      ),
    );
    expect(new Set(messages).size).toBe(1);
    expect(messages[0]).toMatch(/non-public address/);
  });

  it("answers the same for a name that does not resolve and one that resolves inside", async () => {
    const message = (u: string) =>
      guard()
        .resolve(new URL(u))
        .then(
          () => "",
          (e: Error) => e.message.replace(/^\S+/, "HOST"),
        );
    const answers = await Promise.all(["http://git.internal/", "http://does-not-exist.example/"].map(message));
    expect(answers[0]).toMatch(/does not resolve to a public address/);
    expect(answers[1]).toBe(answers[0]);
  });
});

describe("IP address parsing and classification", () => {
  it("reads every spelling of an address to the same bytes", () => {
    const forms = [
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "0:0:0:0:0:ffff:7f00:1",
      "[::FFFF:7F00:0001]",
      "::ffff:7f00:1%eth0",
    ];
    for (const f of forms) expect(formatIpAddress(parseIpAddress(f)!), f).toBe("::ffff:7f00:1");
    expect(formatIpAddress(parseIpAddress("2001:db8:0:0:1:0:0:1")!)).toBe("2001:db8::1:0:0:1");
    expect(formatIpAddress(parseIpAddress("1:0:0:0:0:0:0:0")!)).toBe("1::");
    expect(formatIpAddress(parseIpAddress("1:2:3:4:5:6:7:8")!)).toBe("1:2:3:4:5:6:7:8");
  });

  it("refuses text that is not exactly an address", () => {
    for (const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "01.2.3.4",
      "0x7f.0.0.1",
      "256.0.0.1",
      "1.2.3.-4",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      ":::1",
      "1::2::3",
      "::1.2.3.4:5",
      "1.2.3.4::",
      "12345::",
      "::g",
      "example.com",
    ]) {
      expect(parseIpAddress(bad), bad).toBeNull();
    }
  });

  it("matches networks bit by bit", () => {
    const cgnat = parseIpPrefix("100.64.0.0/10");
    expect(prefixContains(cgnat, parseIpAddress("100.127.255.255")!)).toBe(true);
    expect(prefixContains(cgnat, parseIpAddress("100.128.0.0")!)).toBe(false);
    expect(prefixContains(parseIpPrefix("0.0.0.0/0"), parseIpAddress("8.8.8.8")!)).toBe(true);
    // An IPv4 network never holds an IPv6 address, whatever its bytes.
    expect(prefixContains(cgnat, parseIpAddress("6440::")!)).toBe(false);
  });

  it("names why an address is refused", () => {
    const reason = (a: string) => {
      const v = classifyAddress(parseIpAddress(a)!);
      return v.public ? "public" : v.reason;
    };
    expect(reason("::1")).toBe("loopback");
    expect(reason("::ffff:127.0.0.1")).toBe("IPv4-mapped loopback");
    expect(reason("::7f00:1")).toBe("IPv4-compatible");
    expect(reason("169.254.169.254")).toMatch(/metadata/);
    expect(reason("8.8.8.8")).toBe("public");
    expect(reason("2606:4700::1111")).toBe("public");
  });
});
