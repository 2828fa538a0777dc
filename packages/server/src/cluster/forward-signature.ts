import { createHmac, timingSafeEqual } from "node:crypto";

/** Headers a node adds to a request it passes to the sandbox's owner. */
export const FORWARDED_BY_HEADER = "x-sandpit-forwarded-by";
export const FORWARDED_AT_HEADER = "x-sandpit-forwarded-at";
export const FORWARD_SIGNATURE_HEADER = "x-sandpit-forward-signature";
export const FORWARD_HEADERS = [FORWARDED_BY_HEADER, FORWARDED_AT_HEADER, FORWARD_SIGNATURE_HEADER] as const;

/**
 * How long a signature stays valid, either side of the receiver's clock: long enough for clocks a few
 * seconds apart and a request queued behind others, short enough that a captured one is soon useless.
 */
export const FORWARD_SIGNATURE_VALIDITY_MS = 30_000;

/** What a signature covers: the sending node, the request line and the moment it was signed. */
export interface ForwardClaim {
  nodeId: string;
  method: string;
  /** Path and query exactly as on the request line. */
  path: string;
  /** Unix ms. */
  at: number;
}

function mac(secret: string, claim: ForwardClaim): Buffer {
  return createHmac("sha256", secret)
    .update(`sandpit-forward-v1\n${claim.nodeId}\n${claim.method.toUpperCase()}\n${claim.path}\n${claim.at}`)
    .digest();
}

/** The headers that mark a request as forwarded by `claim.nodeId`. */
export function signForward(secret: string, claim: ForwardClaim): Record<string, string> {
  return {
    [FORWARDED_BY_HEADER]: claim.nodeId,
    [FORWARDED_AT_HEADER]: String(claim.at),
    [FORWARD_SIGNATURE_HEADER]: mac(secret, claim).toString("base64url"),
  };
}

type Headers = Record<string, string | string[] | undefined>;

/** Whether a request carries any of the forwarding headers (a real forward, or a forged one). */
export function claimsForwarded(headers: Headers): boolean {
  return FORWARD_HEADERS.some((name) => headers[name] !== undefined);
}

/**
 * Checks the forwarding headers of a request: `ok` with the sending node, or why they do not hold. Each
 * header must appear exactly once; the signature must match this request's method and path and be fresh.
 */
export function verifyForward(
  secret: string,
  request: { method: string; path: string; headers: Headers },
  now: number,
): { ok: true; nodeId: string } | { ok: false; reason: string } {
  const nodeId = request.headers[FORWARDED_BY_HEADER];
  const at = request.headers[FORWARDED_AT_HEADER];
  const signature = request.headers[FORWARD_SIGNATURE_HEADER];
  if (typeof nodeId !== "string" || typeof at !== "string" || typeof signature !== "string") {
    return { ok: false, reason: `${FORWARD_HEADERS.join(", ")} must each appear exactly once` };
  }
  if (!/^\d{1,15}$/.test(at)) return { ok: false, reason: `${FORWARDED_AT_HEADER} must be a Unix time in ms` };
  if (Math.abs(now - Number(at)) > FORWARD_SIGNATURE_VALIDITY_MS) {
    return { ok: false, reason: "the forwarding signature has expired" };
  }
  const expected = mac(secret, { nodeId, method: request.method, path: request.path, at: Number(at) });
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: "the forwarding signature does not match" };
  }
  return { ok: true, nodeId };
}
