import { createSandboxRequestSchema, type Template } from "@sandpit/contract";
import type { FastifyRequest } from "fastify";
import { z } from "zod";
import { ApiError } from "../../errors.js";
import { uploadBody, writeUpload } from "../../http/upload-limit.js";
import type { AppServices } from "../../services/index.js";
import type { DialectContext, DialectServices } from "../dialect.js";
import { ENVD_VERSION } from "./mapping.js";
import { type E2bTemplateBuildServices, E2bTemplateBuilds } from "./template-builds.js";
import { templateBuildStartSchema } from "./template-steps.js";

/** `POST /v3/templates` (TemplateBuildRequestV3); `alias` is the deprecated spelling of `name`. */
const buildRequestSchema = z
  .object({
    name: z.string().min(1).optional(),
    alias: z.string().min(1).optional(),
    tags: z.array(z.string()).optional(),
    cpuCount: z.number().int().min(1).max(8).optional(),
    memoryMB: z.number().int().min(256).max(16_384).optional(),
    minFreeDiskMb: z.number().int().min(0).optional(),
    teamID: z.string().optional(),
  })
  .passthrough();
const statusQuerySchema = z.object({
  logsOffset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  level: z.string().optional(),
});
const uploadQuerySchema = z.object({ buildID: z.string().min(1), token: z.string().min(1) });

const SNAPSHOT_ID = /^snp_[a-z2-7]{20}$/;
const TEMPLATE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** What E2B's template routes use. */
export type E2bTemplateServices = DialectServices &
  E2bTemplateBuildServices &
  Pick<AppServices, "snapshots" | "templateBuilds">;

type BuildStatus = "building" | "waiting" | "ready" | "error";
const buildStatusOf: Record<Template["status"], BuildStatus> = {
  ready: "ready",
  building: "building",
  failed: "error",
  // A built-in template not built yet is built by the first sandbox that asks for it.
  missing: "waiting",
};

/**
 * E2B's template API under `/e2b`: `Template.build` (`POST /v3/templates`, the COPY steps' uploads, `POST
 * /v2/templates/{id}/builds/{buildID}`, status with logs), `Template.exists`, `e2b template list` and
 * `e2b template delete`. A template's E2B id is its Sandpit name; built-in templates are listed as public.
 */
export function e2bTemplateRoutes({ app, services, authenticate, parse }: DialectContext<E2bTemplateServices>) {
  const builds = new E2bTemplateBuilds(services);
  const defaults = createSandboxRequestSchema.parse({}).resources;

  const templateOf = (t: Template) => {
    const at = t.builtAt ?? new Date(0).toISOString();
    const builtin = t.kind === "builtin";
    return {
      templateID: t.name,
      buildID: t.name,
      buildStatus: buildStatusOf[t.status],
      buildCount: t.builtAt ? 1 : 0,
      cpuCount: defaults.vcpus,
      memoryMB: defaults.memoryMb,
      diskSizeMB: defaults.diskMb,
      envdVersion: ENVD_VERSION,
      createdAt: at,
      updatedAt: at,
      createdBy: null,
      lastSpawnedAt: null,
      spawnCount: 0,
      names: [t.name],
      aliases: [t.name],
      public: builtin,
    };
  };

  const list = async (request: FastifyRequest) => {
    const org = await authenticate(request);
    return (await services.templates.list(org.id)).map(templateOf);
  };
  app.get("/templates", list);
  app.get("/v2/templates", list);

  app.get<{ Params: { alias: string } }>("/templates/aliases/:alias", async (request) => {
    const org = await authenticate(request);
    const template = await services.templates.get(org.id, request.params.alias).catch(() => undefined);
    if (!template || (template.kind === "custom" && template.status !== "ready")) {
      throw new ApiError("not_found", `template ${request.params.alias} not found`);
    }
    return { templateID: template.name, public: template.kind === "builtin" };
  });

  app.post("/v3/templates", async (request, reply) => {
    const org = await authenticate(request);
    const body = parse(buildRequestSchema, request.body ?? {});
    const name = body.name ?? body.alias;
    if (!name || !TEMPLATE_NAME.test(name)) {
      throw new ApiError(
        "validation_failed",
        "Invalid request: name: must be lowercase letters, digits, '.', '_' or '-' (max 63); tags are not supported",
        {
          fields: [{ field: "name", rule: "format", message: "lowercase letters, digits, '.', '_' or '-' (max 63)" }],
        },
      );
    }
    if (body.tags?.length) {
      throw new ApiError("validation_failed", "Invalid request: tags: template tags are not supported", {
        fields: [{ field: "tags", rule: "supported", message: "template tags are not supported" }],
      });
    }
    const build = builds.request(org, name, {
      ...(body.cpuCount !== undefined ? { vcpus: body.cpuCount } : {}),
      ...(body.memoryMB !== undefined ? { memoryMb: Math.ceil(body.memoryMB / 256) * 256 } : {}),
    });
    reply.code(202);
    return { templateID: name, buildID: build.buildID, names: [name], aliases: [name], tags: [], public: false };
  });

  app.get<{ Params: { templateID: string; hash: string } }>(
    "/templates/:templateID/files/:hash",
    async (request, reply) => {
      const org = await authenticate(request);
      const origin = `${request.protocol}://${request.host}`;
      reply.code(201);
      return builds.uploadLink(org, request.params.templateID, request.params.hash, origin);
    },
  );

  app.register(async (uploads) => {
    // The upload streams in as it arrives, whatever its content type: the route reads it.
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
    uploads.put<{ Params: { templateID: string; hash: string } }>(
      "/templates/:templateID/files/:hash/upload",
      async (request, reply) => {
        const { buildID, token } = parse(uploadQuerySchema, request.query, "query");
        const { body } = uploadBody(request.raw, services.maxUploadBytes);
        await writeUpload(body, (b) =>
          builds.receiveUpload({ templateID: request.params.templateID, hash: request.params.hash, buildID, token }, b),
        );
        reply.code(200);
        return {};
      },
    );
  });

  app.post<{ Params: { templateID: string; buildID: string } }>(
    "/v2/templates/:templateID/builds/:buildID",
    async (request, reply) => {
      const org = await authenticate(request);
      const body = parse(templateBuildStartSchema, request.body ?? {});
      await builds.start(org, request.params.templateID, request.params.buildID, body);
      reply.code(202);
    },
  );

  app.get<{ Params: { templateID: string; buildID: string } }>(
    "/templates/:templateID/builds/:buildID/status",
    async (request) => {
      const org = await authenticate(request);
      const q = parse(statusQuerySchema, request.query, "query");
      return builds.status(org, request.params.templateID, request.params.buildID, q.logsOffset, q.limit);
    },
  );

  /** A snapshot (E2B deletes those through its templates path) or one of the organisation's own templates. */
  app.delete<{ Params: { templateID: string } }>("/templates/:templateID", async (request, reply) => {
    const org = await authenticate(request);
    const id = request.params.templateID;
    if (SNAPSHOT_ID.test(id)) await services.snapshots.delete(org, id);
    else await services.templates.deleteCustom(org.id, id);
    reply.code(204);
  });
}
