import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { AppServices } from "../../services/index.js";
import type { FileOwner, SandboxFiles } from "../../services/sandbox-files.js";

/** The account Vercel runs commands and its file API as (`sudo: true` runs as root). */
export const VERCEL_USER = "vercel-sandbox";

/** Sandboxes seen to have Vercel's account (bounded: forgetting one only costs a lookup). */
const hasVercelUser = new Set<string>();

/**
 * Makes Vercel's account in a sandbox through the agent as root (Sandpit's templates have E2B's `user`, not
 * this one — adding it to `base` would rebuild every built-in template), and gives it the working directory
 * (`/vercel/sandbox`, where git and tarball sources were unpacked as root), as on Vercel. Idempotent.
 */
async function ensureVercelUser(
  exec: AppServices["exec"],
  org: OrgRecord,
  record: Pick<SandboxRecord, "id" | "cwd">,
): Promise<void> {
  const script = [
    `id -u ${VERCEL_USER} >/dev/null 2>&1 || useradd --create-home --user-group --shell /bin/bash ${VERCEL_USER}`,
    `mkdir -p "$1" && chown -R ${VERCEL_USER}:${VERCEL_USER} "$1"`,
  ].join(" && ");
  const result = await exec.run(org, record.id, {
    args: ["/bin/sh", "-c", script, "sh", record.cwd],
    user: "root",
    cwd: "/",
    background: false,
  });
  if (result.exitCode !== 0) {
    throw new ApiError(
      "internal",
      `could not create the ${VERCEL_USER} user in sandbox ${record.id}: ${result.stderr.trim()}`,
    );
  }
}

/**
 * Gives a sandbox Vercel's account when it lacks it, on its first command or file call rather than at
 * create: those calls reach the node the sandbox lives on (a create may be answered by another), and a
 * sandbox made before Sandpit ran Vercel's commands as that account gets it too.
 */
async function giveVercelUser(
  services: Pick<AppServices, "exec" | "files">,
  org: OrgRecord,
  record: Pick<SandboxRecord, "id" | "cwd">,
  opened?: SandboxFiles,
): Promise<void> {
  if (hasVercelUser.has(record.id)) return;
  const { accounts } = opened ?? (await services.files.open(org, record.id));
  if (!(await accounts.user(VERCEL_USER))) await ensureVercelUser(services.exec, org, record);
  if (hasVercelUser.size > 10_000) hasVercelUser.clear();
  hasVercelUser.add(record.id);
}

/** The user a Vercel command runs as: root with `sudo`, else Vercel's account. */
export async function vercelCommandUser(
  services: Pick<AppServices, "exec" | "files">,
  org: OrgRecord,
  record: Pick<SandboxRecord, "id" | "cwd">,
  sudo: boolean,
): Promise<string> {
  if (sudo) return "root";
  await giveVercelUser(services, org, record);
  return VERCEL_USER;
}

/**
 * A sandbox's files as Vercel's file API writes them: owned by the account its commands run as, so
 * that they can change what was uploaded. `owner` is spread into write and mkdir options.
 */
export async function vercelFiles(
  services: Pick<AppServices, "exec" | "files">,
  org: OrgRecord,
  record: Pick<SandboxRecord, "id" | "cwd">,
): Promise<{ sandboxFiles: SandboxFiles; owner: { owner?: FileOwner } }> {
  const sandboxFiles = await services.files.open(org, record.id);
  await giveVercelUser(services, org, record, sandboxFiles);
  const account = await sandboxFiles.accounts.user(VERCEL_USER);
  return { sandboxFiles, owner: account ? { owner: account } : {} };
}
