import { z } from "zod";

/** Sandbox ids have one fixed length so that no id is a prefix of another (runsc matches by prefix). */
export const SANDBOX_ID_PATTERN = /^sbx_[a-z2-7]{20}$/;
export const sandboxIdSchema = z
  .string()
  .regex(SANDBOX_ID_PATTERN, "must be a sandbox id (sbx_ + 20 base32 characters)");

export const timestampSchema = z.string().describe("RFC 3339 timestamp");

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const envSchema = z
  .record(
    z.string().regex(ENV_NAME, "must be a valid environment variable name"),
    z
      .string()
      .max(32_768)
      .refine((v) => !v.includes("\0"), "must not contain NUL"),
  )
  .refine((env) => Object.keys(env).length <= 256, "at most 256 variables");

/** A sandbox carries at most this many metadata entries (at create and after every update). */
export const MAX_METADATA_ENTRIES = 64;
export const metadataKeySchema = z.string().min(1).max(128);
export const metadataValueSchema = z.string().max(1024);

export const metadataSchema = z
  .record(metadataKeySchema, metadataValueSchema)
  .refine((m) => Object.keys(m).length <= MAX_METADATA_ENTRIES, `at most ${MAX_METADATA_ENTRIES} entries`);

export const absolutePathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith("/"), "must be an absolute path")
  .refine((p) => !p.includes("\0"), "must not contain NUL");
