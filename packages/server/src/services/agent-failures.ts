import type { ErrorCode } from "@sandpit/contract";
import { AgentError } from "../agent/agent-client.js";
import { ApiError } from "../errors.js";

/**
 * What the agent said went wrong, kept beside the API error it became: dialects whose providers
 * distinguish more cases than the API's codes (Connect's AlreadyExists, ResourceExhausted...) map from
 * it. It never reaches a native response.
 */
export type AgentFailureReason =
  | "not_found"
  | "is_directory"
  | "not_directory"
  | "exists"
  | "busy"
  | "not_empty"
  | "permission_denied"
  | "no_space"
  | "too_large"
  | "bad_request"
  | "conflict"
  | "internal";

/** An API error that the sandbox's agent caused, with the agent's reason. */
export class AgentFailure extends ApiError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly reason: AgentFailureReason,
  ) {
    super(code, message);
  }
}

const KNOWN_REASONS = new Set<string>([
  "not_found",
  "is_directory",
  "not_directory",
  "exists",
  "busy",
  "not_empty",
  "permission_denied",
  "no_space",
  "too_large",
  "bad_request",
]);

function reasonOf(e: AgentError): AgentFailureReason {
  if (KNOWN_REASONS.has(e.code)) return e.code as AgentFailureReason;
  return e.status === 409 ? "conflict" : "internal";
}

/** The agent's message about a path, naming it once (errno messages already start with it). */
const withPath = (message: string, path: string) => (message.startsWith(`${path}: `) ? message : `${path}: ${message}`);

/**
 * The one translation of agent errors into API errors. `about` names what the call acted on: a path
 * (file calls) or a command. Paths are resolved inside the sandbox by its own kernel.
 */
export function apiErrorOfAgent(e: AgentError, about: { path: string } | { command: string }): AgentFailure {
  const reason = reasonOf(e);
  if ("command" in about) {
    const id = about.command;
    if (reason === "not_found") return new AgentFailure("command_not_found", `command ${id} not found`, reason);
    if (reason === "conflict") return new AgentFailure("conflict", `command ${id}: ${e.message}`, reason);
    if (e.status >= 400 && e.status < 500)
      return new AgentFailure("bad_request", `command ${id}: ${e.message}`, reason);
    return new AgentFailure("internal", `command ${id}: ${e.message}`, reason);
  }
  const path = about.path;
  switch (reason) {
    case "not_found":
      return new AgentFailure("file_not_found", `${path}: no such file or directory`, reason);
    case "is_directory":
      return new AgentFailure("bad_request", `${path} is a directory`, reason);
    case "not_directory":
      return new AgentFailure("bad_request", `${path}: a path component is not a directory`, reason);
    case "exists":
      return new AgentFailure("conflict", `${path} already exists`, reason);
    case "busy":
      return new AgentFailure("conflict", `${path} is in use: a mount point cannot be removed or moved`, reason);
    case "not_empty":
      return new AgentFailure("conflict", `${path} is a directory that is not empty (use recursive=true)`, reason);
    case "permission_denied":
      return new AgentFailure("forbidden", `${path}: permission denied`, reason);
    case "no_space":
      return new AgentFailure("insufficient_storage", `${path}: the sandbox's disk is full`, reason);
    case "too_large":
      return new AgentFailure("payload_too_large", `${path}: too large`, reason);
    case "bad_request":
      // The agent refused what was asked (a fifo or device to read, / to delete, a name too long...).
      return new AgentFailure("bad_request", withPath(e.message, path), reason);
    default:
      return new AgentFailure("internal", withPath(e.message, path), reason);
  }
}

/** Rethrows an agent error as its API error; anything else as it is. */
export function rethrowAgentError(e: unknown, about: { path: string } | { command: string }): never {
  if (e instanceof AgentError) throw apiErrorOfAgent(e, about);
  throw e;
}
