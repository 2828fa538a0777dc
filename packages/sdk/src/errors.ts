import { type ErrorCode, errorStatus, type FieldIssue } from "@sandpit/contract";

/** Codes the SDK raises itself, for failures that never got an error body from the server. */
export type ClientErrorCode =
  | "network_error"
  | "request_timeout"
  | "invalid_response"
  | "build_failed"
  | "http_error"
  | "terminal_closed"
  | "terminal_refused";

/** Everything an error's `code` can be: a code of the API's registry or one of the SDK's own. */
export type SandpitErrorCode = ErrorCode | ClientErrorCode;

/** What every SDK error carries besides its message. */
export interface SandpitErrorInit {
  code: SandpitErrorCode;
  status?: number | undefined;
  requestId?: string | undefined;
  details?: Record<string, unknown> | undefined;
  cause?: unknown;
}

/**
 * Thrown when any Sandpit operation fails; every other SDK error extends it.
 *
 * @example
 * ```ts
 * try {
 *   await Sandbox.get("sbx_aaaaaaaaaaaaaaaaaaaa");
 * } catch (err) {
 *   if (err instanceof SandpitError) console.error(err.code, err.status, err.requestId);
 * }
 * ```
 */
export class SandpitError extends Error {
  /** The API's error code (`sandbox_not_found`, ...) or the SDK's own (`network_error`, ...). */
  readonly code: SandpitErrorCode;
  /** HTTP status of the response, when there was one. */
  readonly status: number | undefined;
  /** The response's `X-Request-ID`, to find the request in the server's logs. */
  readonly requestId: string | undefined;
  /** The `details` object of the error body, if any. */
  readonly details: Record<string, unknown> | undefined;

  constructor(message: string, init: SandpitErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
    this.details = init.details;
  }
}

/** Thrown when the API rejects a request's fields (`validation_failed`); `fields` names each invalid one. */
export class ValidationError extends SandpitError {
  /** One entry per invalid field, named by its dotted path (`resources.vcpus`). */
  readonly fields: FieldIssue[];

  constructor(message: string, init: SandpitErrorInit) {
    super(message, init);
    this.fields = parseFieldIssues(init.details?.fields);
  }
}

/** Thrown when the API key is missing, wrong or not allowed to do this (401, 403). */
export class AuthenticationError extends SandpitError {}

/** Thrown when a resource (a template, a command, ...) does not exist. */
export class NotFoundError extends SandpitError {}

/** Thrown when a sandbox does not exist, belongs to another organisation, or is gone. */
export class SandboxNotFoundError extends NotFoundError {}

/** Thrown when a file or directory does not exist inside a sandbox. */
export class FileNotFoundError extends NotFoundError {}

/** Thrown when the sandbox's state forbids the operation, the sandbox failed, or a quota is used up (409). */
export class ConflictError extends SandpitError {}

/** Thrown when a request body, such as a file upload, is larger than the server accepts (413). */
export class PayloadTooLargeError extends SandpitError {}

/** Thrown when the server keeps answering 429 after every retry; `retryAfterMs` says when to try again. */
export class RateLimitError extends SandpitError {
  /** The server's `Retry-After`, in milliseconds, if it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, init: SandpitErrorInit & { retryAfterMs?: number | undefined }) {
    super(message, init);
    this.retryAfterMs = init.retryAfterMs;
  }
}

/**
 * Thrown when a container registry refuses the image's credentials (missing or wrong `image.auth`):
 * the Sandpit API key itself was fine.
 */
export class ImageAuthError extends SandpitError {}

/** Thrown when a request takes longer than the client-side `timeoutMs`. */
export class TimeoutError extends SandpitError {}

/** Thrown when the server fails (5xx) after every retry, or answers with something that is not the API's shape. */
export class ServerError extends SandpitError {}

/** Thrown when the server cannot be reached, or a connection breaks, after every retry. */
export class NetworkError extends SandpitError {}

type ErrorClass = new (message: string, init: SandpitErrorInit) => SandpitError;

const classByCode: Partial<Record<SandpitErrorCode, ErrorClass>> = {
  validation_failed: ValidationError,
  unauthorized: AuthenticationError,
  forbidden: AuthenticationError,
  not_found: NotFoundError,
  image_auth_failed: ImageAuthError,
  image_not_found: NotFoundError,
  template_not_found: NotFoundError,
  command_not_found: NotFoundError,
  sandbox_not_found: SandboxNotFoundError,
  file_not_found: FileNotFoundError,
  conflict: ConflictError,
  invalid_state: ConflictError,
  sandbox_failed: ConflictError,
  quota_exceeded: ConflictError,
  payload_too_large: PayloadTooLargeError,
  rate_limited: RateLimitError,
  request_timeout: TimeoutError,
  network_error: NetworkError,
  invalid_response: ServerError,
};

function classByStatus(status: number | undefined): ErrorClass {
  if (status === undefined) return SandpitError;
  if (status === 401 || status === 403) return AuthenticationError;
  if (status === 404) return NotFoundError;
  if (status === 409) return ConflictError;
  if (status === 413) return PayloadTooLargeError;
  if (status === 429) return RateLimitError;
  if (status >= 500) return ServerError;
  return SandpitError;
}

/**
 * The one mapping from an error code and HTTP status to an error class: the code decides when the
 * SDK knows it, the status otherwise.
 *
 * @example
 * ```ts
 * createError("gone", { code: "sandbox_not_found", status: 404 }) instanceof SandboxNotFoundError; // true
 * ```
 */
export function createError(
  message: string,
  init: SandpitErrorInit & { retryAfterMs?: number | undefined },
): SandpitError {
  const ErrorType = classByCode[init.code] ?? classByStatus(init.status);
  return new ErrorType(message, init);
}

/** Whether `code` is one of the API's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(errorStatus, code);
}

function parseFieldIssues(value: unknown): FieldIssue[] {
  if (!Array.isArray(value)) return [];
  const issues: FieldIssue[] = [];
  for (const item of value) {
    if (typeof item !== "object" || item === null) continue;
    const { field, rule, message } = item as Record<string, unknown>;
    if (typeof field === "string") {
      issues.push({
        field,
        rule: typeof rule === "string" ? rule : "invalid",
        message: typeof message === "string" ? message : "is invalid",
      });
    }
  }
  return issues;
}
