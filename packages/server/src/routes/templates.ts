import type { TemplateBuildEvent } from "@sandpit/contract";
import { listTemplatesResponseSchema, templateSchema } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import type { TemplateService } from "../templates/template-service.js";
import { sendNdjson, wantsNdjson } from "./ndjson.js";
import { type Authenticate, route } from "./route.js";

/** The events of a build: what happened so far, then new ones until it is done. */
async function* buildEvents(
  build: NonNullable<ReturnType<TemplateService["currentBuild"]>>,
): AsyncGenerator<TemplateBuildEvent> {
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

export function templateRoutes(app: FastifyInstance, authenticate: Authenticate, templates: TemplateService) {
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
    async () => ({ templates: await templates.list() }),
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
    async ({ params }) => templates.get(params.name!),
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
    async ({ request, reply, params }) => {
      const current = await templates.get(params.name!);
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
      const build = templates.startBuild(params.name!, force);
      if (wantsNdjson(request)) {
        await sendNdjson(request, reply, buildEvents(build));
        return undefined;
      }
      reply.code(202);
      return templates.get(params.name!);
    },
  );
}
