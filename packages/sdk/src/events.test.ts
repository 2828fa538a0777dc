import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Webhooks } from "./events.js";

const secret = "whsec_test_secret_0123456789";
const body = '{"id":1,"type":"sandbox.destroyed"}';
const sign = (t: number, payload = body) =>
  `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${payload}`).digest("hex")}`;

describe("Webhooks.verifySignature", () => {
  const now = 1_700_000_000_000;
  const t = now / 1000;

  it("accepts the server's signature of the raw body", () => {
    expect(Webhooks.verifySignature(body, sign(t), secret, { now })).toBe(true);
    expect(Webhooks.verifySignature(new TextEncoder().encode(body), sign(t), secret, { now })).toBe(true);
  });

  it("refuses another body, another secret, a malformed header and an old signature", () => {
    expect(Webhooks.verifySignature(`${body} `, sign(t), secret, { now })).toBe(false);
    expect(Webhooks.verifySignature(body, sign(t), "another_secret_0123456", { now })).toBe(false);
    expect(Webhooks.verifySignature(body, "v1=abc", secret, { now })).toBe(false);
    expect(Webhooks.verifySignature(body, undefined, secret, { now })).toBe(false);
    expect(Webhooks.verifySignature(body, sign(t - 600), secret, { now })).toBe(false);
  });
});
