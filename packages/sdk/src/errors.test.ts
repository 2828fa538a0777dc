import { errorCodes, errorStatus, sandboxSchema } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import { ApiClient } from "./api-client.js";
import { resolveConfig } from "./config.js";
import {
  AuthenticationError,
  ConflictError,
  createError,
  FileNotFoundError,
  ImageAuthError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  SandboxNotFoundError,
  SandpitError,
  ServerError,
  ValidationError,
} from "./errors.js";

function errorResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "x-request-id": "req_123", ...headers },
  });
}

async function failureOf(response: Response, apiKey: string | null = "sk_test"): Promise<unknown> {
  const client = new ApiClient(
    resolveConfig({ apiKey: apiKey ?? undefined, maxRetries: 0, fetch: async () => response }, {}),
  );
  return client.json(sandboxSchema, "/sandboxes/sbx_x").then(
    () => expect.fail("the request should have failed"),
    (err: unknown) => err,
  );
}

describe("createError", () => {
  it.each([
    ["validation_failed", ValidationError],
    ["unauthorized", AuthenticationError],
    ["forbidden", AuthenticationError],
    ["sandbox_not_found", SandboxNotFoundError],
    ["file_not_found", FileNotFoundError],
    ["template_not_found", NotFoundError],
    ["invalid_state", ConflictError],
    ["sandbox_failed", ConflictError],
    ["quota_exceeded", ConflictError],
    ["payload_too_large", PayloadTooLargeError],
    ["rate_limited", RateLimitError],
    ["internal", ServerError],
    ["runtime_unavailable", ServerError],
  ] as const)("maps %s to %o", (code, ErrorType) => {
    const error = createError("boom", { code, status: errorStatus[code] });
    expect(error).toBeInstanceOf(ErrorType);
    expect(error).toBeInstanceOf(SandpitError);
    expect(error.name).toBe(ErrorType.name);
  });

  it("gives every code of the registry a class at least as specific as its status", () => {
    for (const code of errorCodes) {
      const error = createError("x", { code, status: errorStatus[code] });
      if (errorStatus[code] >= 500) expect(error).toBeInstanceOf(ServerError);
      if (errorStatus[code] === 404) expect(error).toBeInstanceOf(NotFoundError);
      if (errorStatus[code] === 409) expect(error).toBeInstanceOf(ConflictError);
    }
  });
});

describe("error responses", () => {
  it("carries code, status, request id and validation fields", async () => {
    const fields = [{ field: "resources.vcpus", rule: "max", message: "must be at most 8" }];
    const error = await failureOf(
      errorResponse(400, { error: { code: "validation_failed", message: "invalid request", details: { fields } } }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({
      code: "validation_failed",
      status: 400,
      requestId: "req_123",
      message: "invalid request",
      fields,
    });
  });

  it("maps sandbox_not_found", async () => {
    const error = await failureOf(errorResponse(404, { error: { code: "sandbox_not_found", message: "no sandbox" } }));
    expect(error).toBeInstanceOf(SandboxNotFoundError);
  });

  it("tells a registry's refusal of image credentials apart from a bad API key", async () => {
    const body = { error: { code: "image_auth_failed", message: "the registry refused the credentials" } };
    const error = await failureOf(errorResponse(403, body));
    expect(error).toBeInstanceOf(ImageAuthError);
    expect(error).not.toBeInstanceOf(AuthenticationError);
  });

  it("maps 401 and explains a missing key", async () => {
    const body = { error: { code: "unauthorized", message: "missing API key" } };
    const error = await failureOf(errorResponse(401, body), null);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toMatch(/SANDPIT_API_KEY/);
  });

  it("falls back to the status when the body is not the API's", async () => {
    const error = await failureOf(errorResponse(502, "<html>bad gateway</html>"));
    expect(error).toBeInstanceOf(ServerError);
    expect(error).toMatchObject({ status: 502, code: "internal", requestId: "req_123" });
  });

  it("falls back to the status for a code it does not know", async () => {
    const error = await failureOf(errorResponse(409, { error: { code: "brand_new_code", message: "nope" } }));
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ code: "conflict", message: "nope" });
  });

  it("rejects a success response that breaks the contract", async () => {
    const error = await failureOf(new Response(JSON.stringify({ id: "nope" }), { status: 200 }));
    expect(error).toBeInstanceOf(ServerError);
    expect(error).toMatchObject({ code: "invalid_response" });
  });
});
