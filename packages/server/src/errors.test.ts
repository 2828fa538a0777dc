import { envSchema, execRequestSchema, metadataSchema } from "@sandpit/contract";
import type { FastifyRequest } from "fastify";
import { describe, expect, it, vi } from "vitest";
import { AgentError } from "./agent/agent-client.js";
import { clientConnectionError, toApiError, validationError } from "./errors.js";

const request = { log: { error: vi.fn() } } as unknown as FastifyRequest;

function fieldsOf(schema: { safeParse(v: unknown): { error?: Parameters<typeof validationError>[0] } }, v: unknown) {
  const error = schema.safeParse(v).error;
  if (!error) throw new Error("expected a validation error");
  return validationError(error).details?.fields;
}

describe("validation errors", () => {
  it("name the rule a refinement declares instead of zod's 'custom'", () => {
    expect(fieldsOf(execRequestSchema, { command: "a\0b", user: "4294967295" })).toEqual([
      { field: "command", rule: "no_nul", message: "must not contain NUL" },
      { field: "user", rule: "uid_range", message: "a numeric uid must be at most 4294967294" },
    ]);
  });

  it("say which rule a record's key broke", () => {
    expect(fieldsOf(metadataSchema, { "a\0b": "v" })).toEqual([
      { field: "a\0b", rule: "no_nul", message: "key: must not contain NUL" },
    ]);
    expect(fieldsOf(envSchema, { "1X": "v" })).toEqual([
      { field: "1X", rule: "invalid_format", message: "key: must be a valid environment variable name" },
    ]);
  });
});

describe("errors that are the client's mistake", () => {
  it("answers the agent's refusals as 4xx, not internal", () => {
    const e = toApiError(new AgentError(400, "bad_request", "not a background command"), request);
    expect([e.status, e.code, e.message]).toEqual([400, "bad_request", "not a background command"]);
    expect(toApiError(new AgentError(500, "internal", "boom"), request).code).toBe("internal");
  });

  it("answers Fastify's body and URL errors as 400", () => {
    const fst = (code: string, statusCode: number) => Object.assign(new Error(code), { code, statusCode });
    expect(toApiError(fst("FST_ERR_CTP_INVALID_CONTENT_LENGTH", 400), request).code).toBe("bad_request");
    expect(toApiError(fst("FST_ERR_BAD_URL", 400), request).message).toMatch(/Malformed URL/);
    expect(toApiError(fst("FST_ERR_SOMETHING_NEW", 405), request).code).toBe("method_not_allowed");
    expect(toApiError(fst("FST_ERR_MAX_PARAM_LENGTH", 414), request).status).toBe(414);
  });

  it("maps Node's parser errors to the envelope's codes, and a reset connection to nothing", () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    expect(clientConnectionError(err("HPE_HEADER_OVERFLOW"))?.status).toBe(431);
    expect(clientConnectionError(err("HPE_INVALID_URL"))?.status).toBe(400);
    expect(clientConnectionError(err("HPE_INVALID_METHOD"))?.code).toBe("bad_request");
    expect(clientConnectionError(err("ERR_HTTP_REQUEST_TIMEOUT"))?.status).toBe(408);
    expect(clientConnectionError(err("ECONNRESET"))).toBeUndefined();
  });
});
