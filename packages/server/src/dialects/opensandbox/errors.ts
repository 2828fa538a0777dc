import type { ErrorCode, FieldIssue } from "@sandpit/contract";
import { ApiError } from "../../errors.js";

/** OpenSandbox's error body (lifecycle API, execd and the egress sidecar alike). */
export interface OpenSandboxErrorBody {
  code: string;
  message: string;
}

/** Sandpit's field names (native create request paths) as the OpenSandbox fields they came from. */
export function openSandboxField(field: string): string {
  const exact: Record<string, string> = {
    "resources.vcpus": "resourceLimits.cpu",
    "resources.memoryMb": "resourceLimits.memory",
    "resources.diskMb": "resourceLimits.ephemeral-storage",
    timeoutMs: "timeout",
    template: "image.uri",
    image: "image.uri",
  };
  if (exact[field]) return exact[field];
  if (field.startsWith("networkPolicy.")) return "networkPolicy.egress";
  if (field.startsWith("volumes.")) return `volumes.${field.split(".")[1] ?? ""}`.replace(/\.$/, "");
  return field;
}

/** A validation error's message, naming OpenSandbox's fields. */
function validationMessage(error: ApiError): string {
  const issues = (error.details?.fields as FieldIssue[] | undefined) ?? [];
  if (!issues.length) return error.message;
  return `Invalid request: ${issues.map((f) => `${openSandboxField(f.field)}: ${f.message}`).join("; ")}`;
}

const LIFECYCLE_CODES: Partial<Record<ErrorCode, string>> = {
  validation_failed: "SANDBOX::INVALID_PARAMETER",
  bad_request: "SANDBOX::INVALID_PARAMETER",
  forbidden: "SANDBOX::FORBIDDEN",
  sandbox_not_found: "SANDBOX::SANDBOX_NOT_FOUND",
  template_not_found: "SANDBOX::INVALID_PARAMETER",
  not_found: "SANDBOX::NOT_FOUND",
  conflict: "SANDBOX::INVALID_STATE",
  invalid_state: "SANDBOX::INVALID_STATE",
  sandbox_failed: "SANDBOX::SANDBOX_FAILED",
  quota_exceeded: "SANDBOX::QUOTA_EXCEEDED",
  source_failed: "SANDBOX::IMAGE_PULL_FAILED",
  upstream_unavailable: "SANDBOX::IMAGE_PULL_FAILED",
  not_implemented: "SANDBOX::API_NOT_SUPPORTED",
  internal: "SANDBOX::UNKNOWN_ERROR",
  runtime_unavailable: "SANDBOX::UNAVAILABLE",
  no_capacity: "SANDBOX::UNAVAILABLE",
  node_fenced: "SANDBOX::UNAVAILABLE",
  database_unavailable: "SANDBOX::UNAVAILABLE",
};

/**
 * A Sandpit error as the lifecycle API answers it. 401s say whether the key was missing or wrong (as
 * OpenSandbox's server does); a template the request named is a bad parameter (400), not a missing
 * resource.
 */
export function lifecycleErrorReply(
  error: ApiError,
  keyGiven: boolean,
): { status: number; body: OpenSandboxErrorBody } {
  if (error.code === "unauthorized") {
    return keyGiven
      ? {
          status: 401,
          body: { code: "INVALID_API_KEY", message: "Authentication credentials are invalid. Check your API key." },
        }
      : {
          status: 401,
          body: {
            code: "MISSING_API_KEY",
            message: "Authentication credentials are missing. Provide the API key in the OPEN-SANDBOX-API-KEY header.",
          },
        };
  }
  const status = error.code === "template_not_found" ? 400 : error.status;
  const own = error.details?.dialectCode;
  const code = typeof own === "string" ? own : (LIFECYCLE_CODES[error.code] ?? `SANDBOX::${error.code.toUpperCase()}`);
  return { status, body: { code, message: validationMessage(error) } };
}

const EXECD_CODES: Partial<Record<ErrorCode, string>> = {
  validation_failed: "INVALID_REQUEST_BODY",
  bad_request: "INVALID_REQUEST_BODY",
  payload_too_large: "INVALID_FILE",
  file_not_found: "FILE_NOT_FOUND",
  // execd answers an unknown command id with 404 INVALID_REQUEST_BODY.
  command_not_found: "INVALID_REQUEST_BODY",
  not_implemented: "NOT_SUPPORTED",
  code_context_not_found: "CONTEXT_NOT_FOUND",
  // A language OpenSandbox runs (java, go…) that Sandpit's code contexts do not.
  language_unavailable: "NOT_SUPPORTED",
  unauthorized: "UNAUTHORIZED",
  forbidden: "PERMISSION_DENIED",
  internal: "RUNTIME_ERROR",
};

/** A Sandpit error as execd and the egress sidecar answer it. */
export function execdErrorReply(error: ApiError): { status: number; body: OpenSandboxErrorBody } {
  const code = EXECD_CODES[error.code] ?? (error.status >= 500 ? "RUNTIME_ERROR" : error.code.toUpperCase());
  return { status: error.status, body: { code, message: validationMessage(error) } };
}

/**
 * What execd (or the egress sidecar) answers for a path Sandpit does not serve: OpenSandbox's NOT_SUPPORTED,
 * naming the path below the sandbox's prefix. Isolated sessions get their own reason.
 */
export function unsupportedExecdPath(method: string, path: string, prefix: string): ApiError {
  const below = path.startsWith(`${prefix}/`) ? path.slice(prefix.length + 1).replace(/^[^/]*/, "") : path;
  if (below === "/v1/isolated" || below.startsWith("/v1/isolated/")) {
    return new ApiError(
      "not_implemented",
      "isolated sessions (/v1/isolated) are not supported: every Sandpit sandbox is already its own gVisor sandbox",
    );
  }
  return new ApiError("not_implemented", `${method} ${below || "/"} is not supported by this execd`);
}
