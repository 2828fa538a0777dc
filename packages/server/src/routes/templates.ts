import type { TemplateBuildEvent } from "@sandpit/contract";
import {
  createTemplateRequestSchema,
  listTemplatesResponseSchema,
  type Template,
  templateSchema,
} from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { sendNdjson, wantsNdjson } from "../http/streaming.js";
import type { TemplateBuildService } from "../services/template-build-service.js";
import type { TemplateBuild, TemplateService } from "../templates/template-service.js";
import { type Authenticate, route } from "./route.js";

/** The events of a build: what happened so far, then new ones until it is done. */
async function* buildEvents(build: TemplateBuild): AsyncGenerator<TemplateBuildEvent> {
  const queue: TemplateBuildEvent[] = [...build.events];
  let wake: (() => void) | undefined;
  const onEvent = (e: TemplateBuildEvent) => {
    queue.push(e);
    wake?.();
  };
  build.on("event", onEvent);
  try {
    for (;;) {
      const next = queue.shift();
      if (next) {
        yield next;
        if (next.type === "done" || next.type === "error") return;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    build.off("event", onEvent);
  }
}

/** A build's events as NDJSON when the client asks for them, else 202 with the template. */
async function answerBuild(
  request: FastifyRequest,
  reply: FastifyReply,
  build: TemplateBuild,
  template: () => Promise<Template>,
) {
  if (wantsNdjson(request)) {
    await sendNdjson(request, reply, buildEvents(build));
    return undefined;
  }
  reply.code(202);
  return template();
}

export function templateRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  templates: TemplateService,
  builds: TemplateBuildService,
) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/templates",
      summary:
        "Build an organisation's own template from a Dockerfile (FROM a template or image; RUN, COPY, ENV, " +
        "WORKDIR, USER, ENTRYPOINT, CMD). With Accept: application/x-ndjson, streams progress and build " +
        "logs until done; otherwise answers 202 at once",
      tags: ["templates"],
      body: createTemplateRequestSchema,
      responses: {
        200: { description: "Build events", contentType: "application/x-ndjson" },
        202: { description: "Build started", schema: templateSchema },
      },
    },
    async ({ org, request, reply, body }) => {
      const build = await builds.submit(org, body);
      return answerBuild(request, reply, build, () => templates.get(org.id, body.name));
    },
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/templates/{name}",
      summary: "Delete an organisation's own template (sandboxes running on it keep working)",
      tags: ["templates"],
      responses: { 204: { description: "Deleted" } },
    },
    async ({ org, params, reply }) => {
      await templates.deleteCustom(org.id, params.name!);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/templates",
      summary: "List templates with their build state",
      tags: ["templates"],
      responses: { 200: { description: "Templates", schema: listTemplatesResponseSchema } },
    },
    async ({ org }) => ({ templates: await templates.list(org.id) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/templates/{name}",
      summary: "Get a template and its build progress",
      tags: ["templates"],
      responses: { 200: { description: "Template", schema: templateSchema } },
    },
    async ({ org, params }) => templates.get(org.id, params.name!),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/templates/{name}/build",
      summary:
        "Build (or join the running build of) a template. With Accept: application/x-ndjson, streams " +
        "progress and log lines until done; otherwise answers 202 at once",
      tags: ["templates"],
      responses: {
        200: { description: "Build events", contentType: "application/x-ndjson" },
        202: { description: "Build started", schema: templateSchema },
      },
    },
    async ({ org, request, reply, params }) => {
      const current = await templates.get(org.id, params.name!);
      const force = (request.query as Record<string, string>).force === "true";
      if (current.status === "ready" && !force) {
        if (wantsNdjson(request)) {
          await sendNdjson(
            request,
            reply,
            (async function* () {
              yield { type: "done", template: current } satisfies TemplateBuildEvent;
            })(),
          );
          return undefined;
        }
        reply.code(202);
        return current;
      }
      const build =
        templates.currentBuild(org.id, params.name!) ??
        (templates.isBuiltin(params.name!)
          ? templates.startBuild(params.name!, force)
          : templates.startCustomBuild(org.id, params.name!));
      return answerBuild(request, reply, build, () => templates.get(org.id, params.name!));
    },
  );
}
