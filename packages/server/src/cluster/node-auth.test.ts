import { describe, expect, it } from "vitest";
import { claimsNodeOrigin, signNodeRequest, verifyNodeRequest } from "./node-auth.js";

describe("node-to-node request signatures", () => {
  const secret = "s3cret";
  const now = 1_800_000_000_000;

  it("verifies a request signed with the cluster's secret, naming the sender", () => {
    const headers = signNodeRequest(secret, "node-1", "post", "/v1/sandboxes/sbx_a/exec?x=1", now);
    expect(verifyNodeRequest(secret, headers, "POST", "/v1/sandboxes/sbx_a/exec?x=1", now + 1000)).toEqual({
      from: "node-1",
    });
  });

  it("refuses another secret, another path or method, a changed sender, and a stale or future time", () => {
    const headers = signNodeRequest(secret, "node-1", "GET", "/v1/sandboxes/sbx_a", now);
    expect(verifyNodeRequest("other", headers, "GET", "/v1/sandboxes/sbx_a", now)).toBeUndefined();
    expect(verifyNodeRequest(secret, headers, "GET", "/v1/sandboxes/sbx_b", now)).toBeUndefined();
    expect(verifyNodeRequest(secret, headers, "DELETE", "/v1/sandboxes/sbx_a", now)).toBeUndefined();
    const renamed = { ...headers, "x-sandpit-node-from": "node-2" };
    expect(verifyNodeRequest(secret, renamed, "GET", "/v1/sandboxes/sbx_a", now)).toBeUndefined();
    expect(verifyNodeRequest(secret, headers, "GET", "/v1/sandboxes/sbx_a", now + 60_000)).toBeUndefined();
    expect(verifyNodeRequest(secret, headers, "GET", "/v1/sandboxes/sbx_a", now - 60_000)).toBeUndefined();
  });

  it("tells whether a request claims to come from a node at all", () => {
    expect(claimsNodeOrigin({ "x-sandpit-node-from": "node-1" })).toBe(true);
    expect(claimsNodeOrigin({ authorization: "Bearer x" })).toBe(false);
  });
});
