import { type ErrorCode, errorStatus, type FieldIssue } from "@sandpit/contract";
import type { FastifyError, FastifyRequest } from "fastify";
import type { ZodError } from "zod";

/** An error the API answers with: a code from the registry, a message for humans, optional details. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = errorStatus[code];
  }
}

export const notFound = (what: "sandbox" | "template" | "command" | "file", id: string) =>
  new ApiError(`${what}_not_found`, `${what} ${id} not found`);

/** Turns zod issues into one validation error naming every field and the rule it broke. */
export function validationError(error: ZodError, where: "body" | "query" | "params" = "body"): ApiError {
  const fields: FieldIssue[] = error.issues.map((issue) => {
    const field = issue.path.map(String).join(".") || (where === "body" ? "(body)" : `(${where})`);
    return { field, rule: issue.code, message: issue.message };
  });
  const summary = fields.map((f) => `${f.field}: ${f.message}`).join("; ");
  return new ApiError("validation_failed", `Invalid request: ${summary}`, { fields });
}

/** Any error a handler throws, as the API error it answers with (unexpected ones are logged). */
export function toApiError(error: FastifyError | ApiError | Error, request: FastifyRequest): ApiError {
  if (error instanceof ApiError) return error;
  const e = error as FastifyError;
  if (e.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
    return new ApiError("bad_request", "Content-Type must be application/json");
  if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new ApiError("payload_too_large", "Request body too large");
  if (e.code === "FST_ERR_CTP_EMPTY_JSON_BODY" || error instanceof SyntaxError || e.statusCode === 400) {
    return new ApiError("bad_request", `Malformed request body: ${error.message}`);
  }
  request.log.error({ err: error }, "unhandled error");
  return new ApiError("internal", "Internal server error");
}
