import { type ErrorCode, errorStatus, type FieldIssue } from "@sandpit/contract";
import type { FastifyError, FastifyRequest } from "fastify";
import type { ZodError } from "zod";
import { AgentError } from "./agent/agent-client.js";
import { NodeFencedError, StoreUnavailableError } from "./domain/index.js";

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

/** The API's error body: `{"error": {code, message, details?}}`. */
export function errorEnvelope(error: ApiError) {
  return {
    error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
  };
}

export const notFound = (what: "sandbox" | "template" | "command" | "file", id: string) =>
  new ApiError(`${what}_not_found`, `${what} ${id} not found`);

/** How long a client is asked to wait before it tries a create again when no node had room, seconds. */
export const NO_CAPACITY_RETRY_AFTER_S = 5;

/** 503 `no_capacity` with Retry-After: no node of the cluster can take the sandbox now. */
export function noCapacity(message: string, details?: Record<string, unknown>): ApiError {
  return new ApiError("no_capacity", message, details, { "retry-after": String(NO_CAPACITY_RETRY_AFTER_S) });
}

/** Turns zod issues into one validation error naming every field and the rule it broke. */
export function validationError(error: ZodError, where: "body" | "query" | "params" = "body"): ApiError {
  const fields: FieldIssue[] = error.issues.map((issue) => {
    const field = issue.path.map(String).join(".") || (where === "body" ? "(body)" : `(${where})`);
    // A bad key of a record (env, metadata) carries the rule it broke inside: "Invalid key in record"
    // alone would not say which.
    const inner = issue.code === "invalid_key" ? issue.issues[0] : undefined;
    const broken = inner ?? issue;
    const rule = (broken.code === "custom" ? broken.params?.rule : undefined) ?? broken.code;
    return { field, rule: String(rule), message: inner ? `key: ${inner.message}` : issue.message };
  });
  const summary = fields.map((f) => `${f.field}: ${f.message}`).join("; ");
  return new ApiError("validation_failed", `Invalid request: ${summary}`, { fields });
}

/** Statuses of framework errors (Fastify's FST_ERR_*) that are the client's mistake, as API error codes. */
const clientStatusCodes: Partial<Record<number, ErrorCode>> = {
  400: "bad_request",
  404: "not_found",
  405: "method_not_allowed",
  413: "payload_too_large",
  414: "uri_too_long",
  415: "bad_request",
};

/** Any error a handler throws, as the API error it answers with (unexpected ones are logged). */
export function toApiError(error: FastifyError | ApiError | Error, request: FastifyRequest): ApiError {
  if (error instanceof ApiError) return error;
  const e = error as FastifyError;
  if (e.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
    return new ApiError("bad_request", "Content-Type must be application/json");
  if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new ApiError("payload_too_large", "Request body too large");
  if (e.code === "FST_ERR_BAD_URL") {
    return new ApiError("bad_request", "Malformed URL: a percent-encoded part of the path is not valid UTF-8");
  }
  if (e.code === "FST_ERR_MAX_PARAM_LENGTH") {
    return new ApiError(
      "uri_too_long",
      "URL too long: a path segment (an id, a name) is longer than any this API takes",
    );
  }
  if (e.code?.startsWith("FST_ERR_CTP_") || error instanceof SyntaxError) {
    return new ApiError("bad_request", `Malformed request body: ${error.message}`);
  }
  // Both pass: the client retries (another node, or this one once it registered again / the database is back).
  if (error instanceof NodeFencedError) {
    return new ApiError(
      "node_fenced",
      `${error.message}; retry shortly`,
      { node: error.nodeId },
      { "retry-after": "2" },
    );
  }
  if (error instanceof StoreUnavailableError) {
    request.log.warn({ err: error.cause }, "database unavailable");
    return new ApiError("database_unavailable", "the database is unavailable; retry shortly", undefined, {
      "retry-after": "2",
    });
  }
  // The agent refused the request itself (a path or argument it cannot use): the caller's mistake.
  if (error instanceof AgentError && error.status >= 400 && error.status < 500) {
    return new ApiError(error.status === 409 ? "conflict" : "bad_request", error.message);
  }
  const clientCode = typeof e.statusCode === "number" ? clientStatusCodes[e.statusCode] : undefined;
  if (clientCode) return new ApiError(clientCode, error.message);
  request.log.error({ err: error }, "unhandled error");
  return new ApiError("internal", "Internal server error");
}

/**
 * A request Node's HTTP parser refused before any route saw it (Fastify's `clientErrorHandler`), as
 * the API error to answer with — or undefined when the connection is gone and nothing can be sent.
 */
export function clientConnectionError(error: NodeJS.ErrnoException): ApiError | undefined {
  switch (error.code) {
    case "ECONNRESET":
    case "EPIPE":
      return undefined;
    case "HPE_HEADER_OVERFLOW":
      return new ApiError(
        "headers_too_large",
        "Request headers too large: the request line (with the URL) and headers must fit in the server's header limit",
      );
    case "ERR_HTTP_REQUEST_TIMEOUT":
    case "ERR_HTTP_HEADERS_TIMEOUT":
      return new ApiError("request_timeout", "The request was not received in time");
    case "HPE_INVALID_URL":
      return new ApiError(
        "bad_request",
        "Malformed URL: characters outside printable ASCII (in the path or query) must be percent-encoded",
      );
    default:
      return new ApiError("bad_request", `Malformed HTTP request (${error.code ?? "parse error"})`);
  }
}
