import path from "node:path";
import type { AgentClient, AgentFileEntry } from "../../agent/agent-client.js";
import { ApiError } from "../../errors.js";
import { findAccount } from "../../services/exec-service.js";
import type { SandboxService } from "../../services/sandbox-service.js";
import type { OrgRecord, SandboxRecord } from "../../store/store.js";

/** The user E2B's envd runs as when a request names none (E2B templates' unprivileged account). */
export const DEFAULT_ENVD_USER = "user";

export interface EnvdAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** What an envd request acts on: the sandbox, its agent, the caller's user. */
export interface EnvdSession {
  org: OrgRecord;
  record: SandboxRecord;
  agent: AgentClient;
  account: EnvdAccount;
  /** A path as envd takes it: relative paths are relative to the user's home. */
  resolve(p: string): string;
  /** Owner names of an entry, from the sandbox's /etc/passwd and /etc/group. */
  ownerOf(entry: Pick<AgentFileEntry, "uid" | "gid">): Promise<{ owner: string; group: string }>;
}

const ROOT: EnvdAccount = { name: "root", uid: 0, gid: 0, home: "/root" };

/** The request's user, from `Authorization: Basic base64(user:)` as the SDK sends it. */
export function basicUser(authorization: string | null | undefined): string | undefined {
  if (!authorization?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
  const user = decoded.split(":")[0];
  return user || undefined;
}

/** A file's text, or "" when it cannot be read (the sandbox may have no such file). */
const readText = (agent: AgentClient, file: string) => agent.readText(file).catch(() => "");

/**
 * Resolves envd requests to sandboxes: the sandbox id (header or host name), its envd access token
 * (`X-Access-Token`, required — every Sandpit sandbox has one) and the user.
 */
export class EnvdSessions {
  constructor(private readonly sandboxes: SandboxService) {}

  async open(sandboxId: string | undefined, token: string | undefined, user: string | undefined): Promise<EnvdSession> {
    if (!sandboxId) throw new ApiError("bad_request", "missing E2b-Sandbox-Id");
    const access = await this.sandboxes.byClientToken(sandboxId, "e2b-envd", token);
    // A wrong token and an unknown sandbox answer alike.
    if (!access) throw new ApiError("unauthorized", "invalid or missing access token for this sandbox");
    const { org, record } = access;
    const { agent } = await this.sandboxes.requireRunning(org, sandboxId);
    const passwd = await readText(agent, "/etc/passwd");
    const account = this.account(passwd, user);
    let groups: string | undefined;
    return {
      org,
      record,
      agent,
      account,
      resolve: (p) => (p.startsWith("/") ? path.posix.normalize(p) : path.posix.join(account.home, p)),
      ownerOf: async ({ uid, gid }) => {
        groups ??= await readText(agent, "/etc/group");
        const owner =
          passwd
            .split("\n")
            .find((l) => l.split(":")[2] === String(uid))
            ?.split(":")[0] ?? String(uid);
        const group =
          groups
            .split("\n")
            .find((l) => l.split(":")[2] === String(gid))
            ?.split(":")[0] ?? String(gid);
        return { owner, group };
      },
    };
  }

  private account(passwd: string, user: string | undefined): EnvdAccount {
    const wanted = user ?? DEFAULT_ENVD_USER;
    const found = findAccount(passwd, wanted);
    if (found) return found;
    // A sandbox without E2B's default account runs requests without a user as root.
    if (user === undefined || wanted === "root") return ROOT;
    throw new ApiError("unauthorized", `user ${wanted} does not exist in the sandbox`);
  }
}
