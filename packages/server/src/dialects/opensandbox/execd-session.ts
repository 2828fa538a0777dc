import path from "node:path";
import type { FastifyRequest } from "fastify";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import type { AppServices } from "../../services/index.js";
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

/** A path as execd takes it: relative paths are relative to the sandbox's working directory. */
export function resolvePath(record: Pick<SandboxRecord, "cwd">, p: string): string {
  return p.startsWith("/") ? path.posix.normalize(p) : path.posix.join(record.cwd, p);
}
