import path from "node:path";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { FileService } from "../../services/file-service.js";
import type { SandboxAccount } from "../../services/sandbox-accounts.js";
import type { SandboxFileInfo, SandboxFiles } from "../../services/sandbox-files.js";
import type { SandboxService } from "../../services/sandbox-service.js";

/** The user E2B's envd runs as when a request names none (E2B templates' unprivileged account). */
export const DEFAULT_ENVD_USER = "user";

export type EnvdAccount = SandboxAccount;

/** What an envd request acts on: the sandbox, its files, the caller's user. */
export interface EnvdSession {
  org: OrgRecord;
  record: SandboxRecord;
  files: SandboxFiles;
  account: EnvdAccount;
  /** A path as envd takes it: relative paths are relative to the user's home. */
  resolve(p: string): string;
  /** Owner names of an entry, from the sandbox's /etc/passwd and /etc/group. */
  ownerOf(entry: Pick<SandboxFileInfo, "uid" | "gid">): Promise<{ owner: string; group: string }>;
}

const ROOT: EnvdAccount = { name: "root", uid: 0, gid: 0, home: "/root" };

/** The request's user, from `Authorization: Basic base64(user:)` as the SDK sends it. */
export function basicUser(authorization: string | null | undefined): string | undefined {
  if (!authorization?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
  const user = decoded.split(":")[0];
  return user || undefined;
}

/**
 * Resolves envd requests to sandboxes: the sandbox id (header or host name), its envd access token
 * (`X-Access-Token`, required — every Sandpit sandbox has one) and the user.
 */
export class EnvdSessions {
  constructor(
    private readonly sandboxes: SandboxService,
    private readonly files: FileService,
  ) {}

  async open(sandboxId: string | undefined, token: string | undefined, user: string | undefined): Promise<EnvdSession> {
    if (!sandboxId) throw new ApiError("bad_request", "missing E2b-Sandbox-Id");
    const access = await this.sandboxes.byClientToken(sandboxId, "e2b-envd", token);
    // A wrong token and an unknown sandbox answer alike.
    if (!access) throw new ApiError("unauthorized", "invalid or missing access token for this sandbox");
    const { org, record } = access;
    const files = await this.files.open(org, sandboxId);
    const account = await this.account(files, user);
    return {
      org,
      record,
      files,
      account,
      resolve: (p) => (p.startsWith("/") ? path.posix.normalize(p) : path.posix.join(account.home, p)),
      ownerOf: ({ uid, gid }) => files.accounts.ownerNames(uid, gid),
    };
  }

  private async account(files: SandboxFiles, user: string | undefined): Promise<EnvdAccount> {
    const wanted = user ?? DEFAULT_ENVD_USER;
    const found = await files.accounts.account(wanted);
    if (found) return found;
    // A sandbox without E2B's default account runs requests without a user as root.
    if (user === undefined || wanted === "root") return ROOT;
    throw new ApiError("unauthorized", `user ${wanted} does not exist in the sandbox`);
  }
}
