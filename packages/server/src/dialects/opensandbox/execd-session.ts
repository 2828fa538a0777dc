import path from "node:path";
import type { FastifyRequest } from "fastify";
import type { AgentClient } from "../../agent/agent-client.js";
import { ApiError } from "../../errors.js";
import { findAccount } from "../../services/exec-service.js";
import type { AppServices } from "../../services/index.js";
import type { OrgRecord, SandboxRecord } from "../../store/store.js";
import { singleHeader } from "../dialect.js";

/** The header each in-sandbox service takes its access token in (handed out by the endpoints call). */
export const TOKEN_HEADERS = { execd: "x-execd-access-token", egress: "opensandbox-egress-auth" } as const;
const API_KEY_HEADER = "open-sandbox-api-key";
/** The sandbox-scoped token of each in-sandbox service (see SandboxService.clientToken). */
export const CLIENT_SERVICES = { execd: "opensandbox-execd", egress: "opensandbox-egress" } as const;

/** The caller's right to a sandbox's execd or egress API. */
export interface SandboxAccess {
  org: OrgRecord;
  record: SandboxRecord;
}

/**
 * Who may call a sandbox's execd (or egress sidecar): a client with its access token (from the endpoints
 * call), or with an API key of the sandbox's organisation (the SDK sends both). A wrong token and an
 * unknown sandbox answer alike.
 */
export async function accessSandbox(
  services: Pick<AppServices, "auth" | "sandboxes">,
  request: FastifyRequest,
  sandboxId: string,
  service: keyof typeof TOKEN_HEADERS,
): Promise<SandboxAccess> {
  const token = singleHeader(request, TOKEN_HEADERS[service]);
  if (token) {
    const access = await services.sandboxes.byClientToken(sandboxId, CLIENT_SERVICES[service], token);
    if (access) return access;
  }
  const key = singleHeader(request, API_KEY_HEADER);
  if (key) {
    const org = await services.auth.authenticate(key);
    return { org, record: await services.sandboxes.get(org, sandboxId) };
  }
  throw new ApiError(
    "unauthorized",
    token
      ? "invalid access token for this sandbox"
      : `send the ${TOKEN_HEADERS[service].toUpperCase()} header from the endpoints call (or OPEN-SANDBOX-API-KEY)`,
  );
}

/** A file's text, or "" when it cannot be read (an image may have no /etc/group). */
const readText = (agent: AgentClient, file: string) => agent.readText(file).catch(() => "");

/**
 * Users and groups of one sandbox, read from its /etc/passwd and /etc/group on first use: execd takes
 * and shows owners by name.
 */
export class SandboxAccounts {
  private passwd: Promise<string> | undefined;
  private group: Promise<string> | undefined;

  constructor(private readonly agent: AgentClient) {}

  private passwdText() {
    this.passwd ??= readText(this.agent, "/etc/passwd");
    return this.passwd;
  }

  private groupText() {
    this.group ??= readText(this.agent, "/etc/group");
    return this.group;
  }

  private static nameOf(text: string, id: number): string {
    const line = text.split("\n").find((l) => l.split(":")[2] === String(id));
    return line?.split(":")[0] ?? String(id);
  }

  async ownerNames(uid: number, gid: number): Promise<{ owner: string; group: string }> {
    return {
      owner: SandboxAccounts.nameOf(await this.passwdText(), uid),
      group: SandboxAccounts.nameOf(await this.groupText(), gid),
    };
  }

  /** A user name or uid as `{uid, gid}` (its primary group), or undefined when the sandbox has no such user. */
  async user(name: string): Promise<{ uid: number; gid: number } | undefined> {
    const account = findAccount(await this.passwdText(), name);
    return account ? { uid: account.uid, gid: account.gid } : undefined;
  }

  /** A group name or gid as its gid. */
  async groupId(name: string): Promise<number | undefined> {
    if (/^[0-9]+$/.test(name)) return Number(name);
    const line = (await this.groupText()).split("\n").find((l) => l.split(":")[0] === name);
    const gid = line?.split(":")[2];
    return gid === undefined ? undefined : Number(gid);
  }

  /**
   * The owner a file gets from execd's `owner`/`group` (names or ids); without either, the sandbox's
   * default user (commands run as that user, so they can change what was uploaded).
   */
  async ownerFor(
    spec: { owner?: string | undefined; group?: string | undefined },
    defaultUser: string | null,
    field: string,
  ): Promise<{ uid: number; gid: number } | undefined> {
    const ownerName = spec.owner ?? defaultUser ?? undefined;
    let owner = ownerName === undefined ? undefined : await this.user(ownerName);
    if (ownerName !== undefined && !owner) {
      throw new ApiError("validation_failed", `Invalid request: ${field}.owner: no user ${ownerName} in the sandbox`, {
        fields: [{ field: `${field}.owner`, rule: "unknown_user", message: `no user ${ownerName} in the sandbox` }],
      });
    }
    if (spec.group !== undefined) {
      const gid = await this.groupId(spec.group);
      if (gid === undefined) {
        throw new ApiError(
          "validation_failed",
          `Invalid request: ${field}.group: no group ${spec.group} in the sandbox`,
          {
            fields: [
              { field: `${field}.group`, rule: "unknown_group", message: `no group ${spec.group} in the sandbox` },
            ],
          },
        );
      }
      owner = { uid: owner?.uid ?? 0, gid };
    }
    return owner;
  }
}

/** A path as execd takes it: relative paths are relative to the sandbox's working directory. */
export function resolvePath(record: Pick<SandboxRecord, "cwd">, p: string): string {
  return p.startsWith("/") ? path.posix.normalize(p) : path.posix.join(record.cwd, p);
}
