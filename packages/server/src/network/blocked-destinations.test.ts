import { describe, expect, it } from "vitest";
import { cidrContains, isBlockedAddress } from "./blocked-destinations.js";

describe("cidrContains", () => {
  it("matches IPv4 networks and single addresses bit by bit", () => {
    expect(cidrContains("169.254.0.0/16", "169.254.169.254")).toBe(true);
    expect(cidrContains("100.64.0.0/10", "100.127.255.255")).toBe(true);
    expect(cidrContains("100.64.0.0/10", "100.128.0.0")).toBe(false);
    expect(cidrContains("10.231.0.0/16", "10.231.7.2")).toBe(true);
    expect(cidrContains("8.8.8.8", "8.8.8.8")).toBe(true);
    expect(cidrContains("8.8.8.8", "8.8.8.9")).toBe(false);
  });

  it("matches nothing that is not an address", () => {
    expect(cidrContains("0.0.0.0/0", "not-an-ip")).toBe(false);
    expect(cidrContains("0.0.0.0/0", "")).toBe(false);
  });

  it("blocks what is in a blocked network, and anything that is not an address", () => {
    const blocked = ["127.0.0.0/8", "169.254.0.0/16"];
    expect(isBlockedAddress(blocked, "169.254.169.254")).toBe(true);
    expect(isBlockedAddress(blocked, "1.1.1.1")).toBe(false);
    expect(isBlockedAddress(blocked, "not-an-ip")).toBe(true);
  });
});
