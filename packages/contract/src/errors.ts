/**
 * The single registry of error codes the API answers with. Every code has exactly one HTTP status:
 * a code without a status does not compile.
 */
export const errorStatus = {
  validation_failed: 400,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  image_auth_failed: 403,
  not_found: 404,
  sandbox_not_found: 404,
  template_not_found: 404,
  image_not_found: 404,
  command_not_found: 404,
  file_not_found: 404,
  volume_not_found: 404,
  code_context_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  invalid_state: 409,
  sandbox_failed: 409,
  quota_exceeded: 409,
  volume_in_use: 409,
  /** The sandbox has no interpreter for a code context's language (e.g. no ipykernel for python). */
  language_unavailable: 409,
  /** The sandbox has no desktop (not asked for at create), or its display did not start. */
  desktop_unavailable: 409,
  request_timeout: 408,
  payload_too_large: 413,
  uri_too_long: 414,
  idempotency_mismatch: 422,
  source_failed: 422,
  image_invalid: 422,
  rate_limited: 429,
  headers_too_large: 431,
  upstream_unavailable: 502,
  internal: 500,
  not_implemented: 501,
  runtime_unavailable: 503,
  no_capacity: 503,
  /** The node serving the request lost its cluster lease; another node or a retry after Retry-After works. */
  node_fenced: 503,
  /** The database (PostgreSQL) cannot be reached right now; retry after Retry-After. */
  database_unavailable: 503,
  timeout: 504,
  insufficient_storage: 507,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof errorStatus;

export const errorCodes = Object.keys(errorStatus) as ErrorCode[];

/** One invalid field of a request, named by its dotted path (`resources.vcpus`, `env.FOO`). */
export interface FieldIssue {
  field: string;
  rule: string;
  message: string;
}

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    details?: Record<string, unknown> & { fields?: FieldIssue[] };
  };
}
