import { STATUS_CODES } from "node:http";
import type { ErrorCode, FieldIssue } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../../errors.js";
import { daytonaField } from "./mapping.js";

/** Who answered, as Daytona's error bodies say it (the SDK picks its error classes by source and code). */
export type DaytonaSource = "DAYTONA_API" | "DAYTONA_DAEMON";

/** Daytona's error body: NestJS's `{statusCode, message, error}` with a code, the source and the request. */
export interface DaytonaErrorBody {
  statusCode: number;
  message: string;
  error: string;
  code: string;
  source: DaytonaSource;
  timestamp: string;
  path: string;
  method: string;
}

/** Codes the daemon's errors carry that the SDK maps to its own error classes (FILE_NOT_FOUND → DaytonaFileNotFoundError…). */
const DAEMON_CODES: Partial<Record<ErrorCode, string>> = {
  file_not_found: "FILE_NOT_FOUND",
  forbidden: "FILE_ACCESS_DENIED",
  request_timeout: "PROCESS_EXECUTION_TIMEOUT",
  command_not_found: "PROCESS_NOT_FOUND",
  code_context_not_found: "PROCESS_NOT_FOUND",
};

/** A validation error's message naming Daytona's fields. */
function messageOf(error: ApiError): string {
  const issues = (error.details?.fields as FieldIssue[] | undefined) ?? [];
  if (!issues.length) return error.message;
  return `Invalid request: ${issues.map((f) => `${daytonaField(f.field)}: ${f.message}`).join("; ")}`;
}

/** A Sandpit error as Daytona's API (or the toolbox daemon) answers it. */
export function daytonaErrorReply(
  error: ApiError,
  request: FastifyRequest,
  source: DaytonaSource,
): { status: number; body: DaytonaErrorBody } {
  const status = error.status;
  const own = typeof error.details?.daytonaCode === "string" ? error.details.daytonaCode : undefined;
  const code = own ?? (source === "DAYTONA_DAEMON" ? DAEMON_CODES[error.code] : undefined) ?? error.code.toUpperCase();
  return {
    status,
    body: {
      statusCode: status,
      message: error.code === "unauthorized" ? `Unauthorized: ${error.message}` : messageOf(error),
      error: STATUS_CODES[status] ?? "Error",
      code,
      source,
      timestamp: new Date().toISOString(),
      path: request.url.split("?")[0] ?? request.url,
      method: request.method,
    },
  };
}

/**
 * Axios sends `application/x-www-form-urlencoded` on the SDK's bodiless POSTs (stop, createFolder, move…):
 * an empty body of that type is no body. No route takes a form.
 */
export function acceptEmptyForms(app: FastifyInstance) {
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    if (body === "") done(null, undefined);
    else done(new ApiError("bad_request", "Content-Type must be application/json"), undefined);
  });
}
