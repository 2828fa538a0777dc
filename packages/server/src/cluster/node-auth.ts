import { createHmac } from "node:crypto";
import { tokensEqual } from "../lib/server-key.js";

/** Headers of a request one node makes to another (a forwarded client request or an internal call). */
export const NODE_AUTH_HEADERS = {
  from: "x-sandpit-node-from",
  at: "x-sandpit-node-at",
  signature: "x-sandpit-node-signature",
} as const;

/** How far a signed request's time may be from the receiver's clock (replays older than this fail). */
const MAX_SKEW_MS = 30_000;

function signature(secret: string, from: string, method: string, pathAndQuery: string, at: string): string {
  return createHmac("sha256", secret).update(`${from}\n${method.toUpperCase()}\n${pathAndQuery}\n${at}`).digest("hex");
}

/** The headers that prove to another node of the cluster that `from` sends this request. */
export function signNodeRequest(
  secret: string,
  from: string,
  method: string,
  pathAndQuery: string,
  now = Date.now(),
): Record<string, string> {
  const at = String(now);
  return {
    [NODE_AUTH_HEADERS.from]: from,
    [NODE_AUTH_HEADERS.at]: at,
    [NODE_AUTH_HEADERS.signature]: signature(secret, from, method, pathAndQuery, at),
  };
}

/** Whether the request carries any node header (then it must verify, or be refused). */
export function claimsNodeOrigin(headers: Record<string, string | string[] | undefined>): boolean {
  return Object.values(NODE_AUTH_HEADERS).some((h) => headers[h] !== undefined);
}

/** The sending node when the signature holds and is fresh; undefined otherwise. */
export function verifyNodeRequest(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  method: string,
  pathAndQuery: string,
  now = Date.now(),
): { from: string } | undefined {
  const [from, at, sig] = [NODE_AUTH_HEADERS.from, NODE_AUTH_HEADERS.at, NODE_AUTH_HEADERS.signature].map((h) =>
    typeof headers[h] === "string" ? headers[h] : undefined,
  );
  if (!from || !at || !sig || !/^\d{1,15}$/.test(at)) return undefined;
  if (Math.abs(now - Number(at)) > MAX_SKEW_MS) return undefined;
  return tokensEqual(sig, signature(secret, from, method, pathAndQuery, at)) ? { from } : undefined;
}
