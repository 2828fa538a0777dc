import { randomBytes } from "node:crypto";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** Random lowercase base32 string; every character carries 5 bits from the CSPRNG. */
export function randomBase32(length: number): string {
  const bytes = randomBytes(length);
  let s = "";
  for (let i = 0; i < length; i++) s += BASE32[(bytes[i] ?? 0) & 31];
  return s;
}

/** `sbx_` + 20 base32 characters: fixed length, so no sandbox id is a prefix of another. */
export const newSandboxId = () => `sbx_${randomBase32(20)}`;
export const newCommandId = () => `cmd_${randomBase32(20)}`;
export const newRequestId = () => `req_${randomBase32(20)}`;
/** API keys: `sp_` + 40 base32 characters (200 bits). Only their SHA-256 is stored. */
/** Key formats: Sandpit's own, or E2B's `e2b_` + 40 hex digits for clients that expect that shape. */
export type ApiKeyFormat = "sandpit" | "e2b";
export const newApiKey = (format: ApiKeyFormat = "sandpit") =>
  format === "e2b" ? `e2b_${randomBytes(20).toString("hex")}` : `sp_${randomBase32(40)}`;
export const newToken = () => randomBase32(32);
