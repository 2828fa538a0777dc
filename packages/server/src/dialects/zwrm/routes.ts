import { createSandboxRequestSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError, notFound } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import { uploadBody, writeUpload } from "../../http/upload-limit.js";
import type { AppServices } from "../../services/index.js";
import { bearerToken, type DialectContext, type DialectServices, registerDialect, singleHeader } from "../dialect.js";
import {
  checkFilePath,
  createRequestFrom,
  errorReplyOf,
  sandboxOf,
  statusesFor,
  statusOf,
  ZWRM_LIMITS,
} from "./mapping.js";
import { createSandboxSchema, execSchema, filePathQuerySchema, keepaliveSchema, listQuerySchema } from "./schemas.js";

export const ZWRM_PREFIX = "/zwrm";

type WithId = FastifyRequest<{ Params: { id: string } }>;

/** What the ZWRM dialect uses. */
export type ZwrmServices = DialectServices &
  Pick<AppServices, "sandboxes" | "exec" | "files" | "warmPools" | "maxUploadBytes">;

/**
 * ZWRM under `/zwrm` (base URL `http://<sandpit>/zwrm`): sandboxes (create, list, get, destroy),
 * keepalive, wake, exec, upload and download. Keys are Sandpit keys, sent as `Authorization: Bearer`
 * or `X-API-Key`; errors are `{error, code, fields?}`.
 */
export function zwrmDialect(app: FastifyInstance, services: ZwrmServices) {
  registerDialect(
    app,
    services,
    {
      name: "zwrm",
      prefix: ZWRM_PREFIX,
      apiKey: (request) => bearerToken(request) ?? singleHeader(request, "x-api-key"),
      errorReply: (error) => errorReplyOf(error),
    },
    routes,
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<ZwrmServices>) {
  const { sandboxes, exec, files } = services;

  /** The caller's sandbox: 404 when there is none, 403 when it belongs to another organisation (ZWRM's rule). */
  const owned = async (request: WithId): Promise<{ org: OrgRecord; record: SandboxRecord }> => {
    const org = await authenticate(request);
    const record = await sandboxes.getUnscoped(request.params.id);
    if (!record) throw notFound("sandbox", request.params.id);
    if (record.orgId !== org.id) {
      throw new ApiError("forbidden", `sandbox ${request.params.id} belongs to a different organization`);
    }
    return { org, record };
  };

  const filePath = (request: FastifyRequest) => {
    const checked = checkFilePath(parse(filePathQuerySchema, request.query, "query").path);
    if ("error" in checked) {
      throw new ApiError("validation_failed", `invalid path: ${checked.error}`, {
        fields: [{ field: "path", rule: "path", message: checked.error }],
      });
    }
    return checked.path;
  };

  app.post("/v1/sandboxes", async (request, reply) => {
    const org = await authenticate(request);
    const body = parse(createSandboxSchema, request.body ?? {});
    const params = parse(createSandboxRequestSchema, createRequestFrom(body));
    const { record } = await services.warmPools.createSandbox(org, params);
    reply.code(201);
    return sandboxOf(record);
  });

  app.get("/v1/sandboxes", async (request) => {
    const org = await authenticate(request);
    const { status } = parse(listQuerySchema, request.query, "query");
    const statuses = status
      ? statusesFor(status)
      : statusesFor("creating").concat(statusesFor("running"), statusesFor("suspended"));
    const records = await sandboxes.list(org, { statuses, limit: 1000 });
    return { sandboxes: records.map(sandboxOf) };
  });

  app.get("/v1/sandboxes/:id", forSandbox("id"), async (request: WithId) => sandboxOf((await owned(request)).record));

  // Idempotent: destroying a destroyed sandbox answers 204 again.
  app.delete("/v1/sandboxes/:id", forSandbox("id"), async (request: WithId, reply) => {
    const { org, record } = await owned(request);
    if (record.status !== "destroyed") await sandboxes.destroy(org, record.id);
    reply.code(204);
  });

  app.post("/v1/sandboxes/:id/keepalive", forSandbox("id"), async (request: WithId) => {
    const { org, record } = await owned(request);
    const body = parse(keepaliveSchema, request.body);
    if (record.lifecycle !== "ephemeral") {
      throw new ApiError("invalid_state", `sandbox ${record.id} is not ephemeral: persistent sandboxes do not expire`);
    }
    if (record.status !== "running") {
      throw new ApiError("invalid_state", `sandbox ${record.id} is not running (${statusOf(record.status)})`);
    }
    return sandboxOf(await sandboxes.setTimeout(org, record.id, body?.timeout ?? record.timeoutMs));
  });

  app.post("/v1/sandboxes/:id/wake", forSandbox("id"), async (request: WithId) => {
    const { org, record } = await owned(request);
    const woken = await sandboxes.resume(org, record.id);
    // Waking counts as activity: the idle timer starts again.
    sandboxes.touch(woken.id);
    return sandboxOf(woken);
  });

  app.post("/v1/sandboxes/:id/exec", forSandbox("id"), async (request: WithId) => {
    const { org, record } = await owned(request);
    const body = parse(execSchema, request.body ?? {});
    const result = await exec.run(org, record.id, {
      command: body.command,
      timeoutMs: body.timeout ?? ZWRM_LIMITS.execTimeoutMs.default,
      ...(body.workdir ? { cwd: body.workdir } : {}),
      ...(body.env ? { env: body.env } : {}),
    });
    return {
      stdout: result.stdout,
      stderr: result.stderr,
      exit_code: result.exitCode,
      duration_ms: Math.round(result.durationMs),
      timed_out: result.timedOut,
    };
  });

  app.get("/v1/sandboxes/:id/download", forSandbox("id"), async (request: WithId, reply) => {
    const { org, record } = await owned(request);
    const file = await files.read(org, record.id, filePath(request));
    reply.header("content-type", "application/octet-stream").header("content-length", file.size);
    return reply.send(file.body);
  });

  // Uploads stream to the sandbox as they arrive: no body parsing in this scope.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
    const upload = async (request: WithId, reply: FastifyReply) => {
      const { org, record } = await owned(request);
      const path = filePath(request);
      if (request.headers["content-type"]?.startsWith("multipart/")) {
        throw new ApiError("bad_request", "send the file's bytes as the request body, not as multipart form data");
      }
      const { body, size } = uploadBody(request.raw, Math.min(ZWRM_LIMITS.uploadBytes, services.maxUploadBytes));
      await writeUpload(body, (b) => files.write(org, record.id, path, b, size));
      reply.code(204);
    };
    scope.post("/v1/sandboxes/:id/upload", forSandbox("id"), upload);
    scope.put("/v1/sandboxes/:id/upload", forSandbox("id"), upload);
  });
}
