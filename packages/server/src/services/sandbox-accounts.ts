import { ApiError } from "../errors.js";

/** A user of a sandbox, from its /etc/passwd. */
export interface SandboxAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The passwd entry for a user name or numeric uid (a uid without an entry runs with gid = uid). */
export function findAccount(passwd: string, user: string): SandboxAccount | undefined {
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid, , home] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || uid === user) return { name, uid: Number(uid), gid: Number(gid), home: home || "/" };
  }
  if (/^[0-9]+$/.test(user)) return { name: user, uid: Number(user), gid: Number(user), home: "/" };
  return undefined;
}

/** The name of the entry with this numeric id (third field) in a passwd or group file, or the id itself. */
function nameOf(text: string, id: number): string {
  const line = text.split("\n").find((l) => l.split(":")[2] === String(id));
  return line?.split(":")[0] ?? String(id);
}

/**
 * Users and groups of one sandbox, read from its /etc/passwd and /etc/group on first use (providers take
 * and show owners by name). `readText` answers "" for a file the sandbox does not have.
 */
export class SandboxAccounts {
  private passwd: Promise<string> | undefined;
  private group: Promise<string> | undefined;

  constructor(private readonly readText: (file: string) => Promise<string>) {}

  private passwdText() {
    this.passwd ??= this.readText("/etc/passwd");
    return this.passwd;
  }

  private groupText() {
    this.group ??= this.readText("/etc/group");
    return this.group;
  }

  /** A user name or uid as its account, or undefined when the sandbox has no such user. */
  async account(name: string): Promise<SandboxAccount | undefined> {
    return findAccount(await this.passwdText(), name);
  }

  async ownerNames(uid: number, gid: number): Promise<{ owner: string; group: string }> {
    return { owner: nameOf(await this.passwdText(), uid), group: nameOf(await this.groupText(), gid) };
  }

  /** A user name or uid as `{uid, gid}` (its primary group), or undefined when the sandbox has no such user. */
  async user(name: string): Promise<{ uid: number; gid: number } | undefined> {
    const account = await this.account(name);
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
   * The owner a file gets from an `owner`/`group` pair (names or ids); without either, the sandbox's
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
