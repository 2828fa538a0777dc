import { z } from "zod";

/** Sandbox ids have one fixed length so that no id is a prefix of another (runsc matches by prefix). */
export const SANDBOX_ID_PATTERN = /^sbx_[a-z2-7]{20}$/;
export const sandboxIdSchema = z
  .string()
  .regex(SANDBOX_ID_PATTERN, "must be a sandbox id (sbx_ + 20 base32 characters)");

export const timestampSchema = z.string().describe("RFC 3339 timestamp");

/**
 * Strings that reach the sandbox as C strings (argv, environment, paths, user names) end at the first
 * NUL, so one inside would silently change their meaning; metadata follows the same rule so that what is
 * stored is what was sent.
 */
export const hasNoNul = (s: string) => !s.includes("\0");
/** `.refine(hasNoNul, noNul)`: the rule is reported as `no_nul` in a validation error's fields. */
export const noNul = { message: "must not contain NUL", params: { rule: "no_nul" } };

/** One argument of a command (or the shell command line): any text but NUL. */
export const commandArgSchema = z.string().max(131_072).refine(hasNoNul, noNul);

/** The highest uid a process can run as: 4294967295 is (uid_t)-1, which setuid reads as "no change". */
export const MAX_UID = 4_294_967_294;
export const sandboxUserSchema = z
  .string()
  .regex(/^[a-z_][a-z0-9_.-]{0,31}$|^[0-9]{1,10}$/, "must be a user name or a numeric uid")
  .refine((u) => !/^[0-9]+$/.test(u) || Number(u) <= MAX_UID, {
    message: `a numeric uid must be at most ${MAX_UID}`,
    params: { rule: "uid_range" },
  });

/**
 * What any process environment can carry: a name without NUL or "=", a value without NUL. Dialects, whose
 * providers accept names such as `MY-VAR`, are held to this; the native API to `envSchema` below.
 */
export const processEnvSchema = z.record(
  z
    .string()
    .min(1)
    .refine((name) => hasNoNul(name) && !name.includes("="), { message: "must not contain NUL or '='" }),
  z.string().refine(hasNoNul, noNul),
);

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const envSchema = z
  .record(
    z.string().regex(ENV_NAME, "must be a valid environment variable name"),
    z.string().max(32_768).refine(hasNoNul, noNul),
  )
  .refine((env) => Object.keys(env).length <= 256, "at most 256 variables");

/** A sandbox carries at most this many metadata entries (at create and after every update). */
export const MAX_METADATA_ENTRIES = 64;
export const metadataKeySchema = z.string().min(1).max(128).refine(hasNoNul, noNul);
export const metadataValueSchema = z.string().max(1024).refine(hasNoNul, noNul);

export const metadataSchema = z
  .record(metadataKeySchema, metadataValueSchema)
  .refine((m) => Object.keys(m).length <= MAX_METADATA_ENTRIES, `at most ${MAX_METADATA_ENTRIES} entries`);

export const absolutePathSchema = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => p.startsWith("/"), "must be an absolute path")
  .refine(hasNoNul, noNul);
