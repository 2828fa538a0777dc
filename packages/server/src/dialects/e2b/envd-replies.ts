import type http from "node:http";
import { ApiError } from "../../errors.js";
import { AgentFailure } from "../../services/agent-failures.js";

/** What E2B's in-sandbox servers (envd, the code interpreter) answer in JSON. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/**
 * envd's REST errors, also those of the code interpreter behind the same `E2B_SANDBOX_URL`: `{code,
 * message}` with the HTTP status as the code. A response already under way can only be cut off.
 */
export function sendError(res: http.ServerResponse, e: unknown) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (e instanceof ApiError) for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
  let status = e instanceof ApiError ? e.status : 500;
  let message = e instanceof Error ? e.message : String(e);
  // envd answers a file it may not touch with 401 and a full disk with its own words.
  if (e instanceof AgentFailure && e.reason === "permission_denied") status = 401;
  if (e instanceof AgentFailure && e.reason === "no_space") message = `not enough disk space: ${e.message}`;
  sendJson(res, status, { code: status, message });
}
