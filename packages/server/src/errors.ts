import { type ErrorCode, errorStatus, type FieldIssue } from "@sandpit/contract";
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
