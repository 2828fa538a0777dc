import { describe, expect, it } from "vitest";
import { createRequestFrom, envdAccessToken, networkPolicyFrom, parseMetadataQuery, parseStates } from "./mapping.js";

describe("E2B mapping", () => {
  it("turns E2B egress settings into Sandpit policies", () => {
    expect(networkPolicyFrom({})).toBeUndefined();
    expect(networkPolicyFrom({ allow_internet_access: false })).toEqual({ mode: "deny-all" });
    expect(networkPolicyFrom({ network: { allowOut: ["8.8.8.8", "*.example.com"], denyOut: ["0.0.0.0/0"] } })).toEqual({
      mode: "custom",
      allow: { cidrs: ["8.8.8.8/32"], domains: ["*.example.com"] },
      deny: { cidrs: [] },
    });
    expect(networkPolicyFrom({ network: { denyOut: ["10.0.0.0/8"] } })).toEqual({
      mode: "custom",
      allow: { cidrs: ["0.0.0.0/0"] },
      deny: { cidrs: ["10.0.0.0/8"] },
    });
  });

  it("maps a create request with seconds, autoPause and every port exposed", () => {
    expect(createRequestFrom({ templateID: "base", timeout: 300, autoPause: true, envVars: { A: "1" } })).toMatchObject(
      {
        template: "base",
        timeoutMs: 300_000,
        timeoutAction: "pause",
        env: { A: "1" },
        allPorts: true,
        publicPorts: true,
      },
    );
    expect(createRequestFrom({ templateID: "base", network: { allowPublicTraffic: false } }).publicPorts).toBe(false);
  });

  it("reads the metadata and state queries", () => {
    expect(parseMetadataQuery("user%3Dabc=x&app=prod%20x")).toEqual({ "user=abc": "x", app: "prod x" });
    expect(parseStates(undefined)).toEqual(["running", "paused"]);
    expect(parseStates("paused")).toEqual(["paused"]);
    expect(parseStates(["running,paused"])).toEqual(["running", "paused"]);
  });

  it("derives a different envd token per sandbox", () => {
    const a = envdAccessToken({ id: "sbx_a", agentToken: "t" });
    expect(a).toBe(envdAccessToken({ id: "sbx_a", agentToken: "t" }));
    expect(a).not.toBe(envdAccessToken({ id: "sbx_b", agentToken: "t" }));
  });
});
