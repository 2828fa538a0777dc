import { createSandboxRequestSchema, SANDBOX_ID_PATTERN } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { forSandboxResolvedBy } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { TRAFFIC_TOKEN_QUERY } from "../../services/port-service.js";
import { bearerToken, type DialectContext, type DialectServices, registerDialect } from "../dialect.js";
import { acceptEmptyForms, daytonaErrorReply } from "./errors.js";
import {
  createRequestFrom,
  DAYTONA_API_PREFIX,
  DAYTONA_TOOLBOX_PREFIX,
  labelsOf,
  META,
  sandboxOf,
  startupOf,
  stateOf,
} from "./mapping.js";
import { createSandboxSchema, listQuerySchema, portParamSchema, replaceLabelsSchema } from "./schemas.js";

type Route = FastifyRequest<{ Params: { id: string; port: string } }>;

/** What Daytona's API uses. */
export type DaytonaApiServices = DialectServices & Pick<AppServices, "sandboxes" | "warmPools" | "templates" | "ports">;

/**
 * Daytona's REST API under `/daytona/api` (the SDK's `DAYTONA_API_URL`): sandboxes (create, get by id or
 * name, list, delete, start, stop, archive, labels), the toolbox proxy URL and port preview
 * links. Keys are Sandpit keys sent as the SDK's bearer token. A stopped Daytona sandbox is a paused
 * Sandpit sandbox.
 */
export function daytonaApiDialect(app: FastifyInstance, services: DaytonaApiServices) {
  registerDialect(
    app,
    services,
    {
      name: "daytona",
      prefix: DAYTONA_API_PREFIX,
      apiKey: bearerToken,
      errorReply: (error, request) => daytonaErrorReply(error, request, "DAYTONA_API"),
    },
    routes,
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<DaytonaApiServices>) {
  const { sandboxes, warmPools, templates, ports } = services;

  acceptEmptyForms(app);

  const baseOf = (request: FastifyRequest) => `${request.protocol}://${request.host}`;
  const toolboxUrlOf = (request: FastifyRequest) => `${baseOf(request)}${DAYTONA_TOOLBOX_PREFIX}`;
  const dto = (request: FastifyRequest, record: SandboxRecord) => sandboxOf(record, toolboxUrlOf(request));

  /** The sandbox an id or a name stands for (a name: the newest live sandbox of that name). */
  async function find(org: OrgRecord, idOrName: string): Promise<SandboxRecord | undefined> {
    if (SANDBOX_ID_PATTERN.test(idOrName)) return sandboxes.get(org, idOrName).catch(() => undefined);
    const [newest] = await sandboxes.list(org, { metadata: { [META.name]: idOrName }, limit: 1 });
    return newest;
  }

  async function byIdOrName(org: OrgRecord, idOrName: string): Promise<SandboxRecord> {
    const found = await find(org, idOrName);
    if (!found) throw new ApiError("sandbox_not_found", `Sandbox with ID or name ${idOrName} not found`);
    return found;
  }

  /** A sandbox that still exists (a destroyed one is gone, as in Daytona once deleted). */
  async function live(org: OrgRecord, idOrName: string): Promise<SandboxRecord> {
    const record = await byIdOrName(org, idOrName);
    if (record.status === "destroyed" || record.status === "destroying") {
      throw new ApiError("sandbox_not_found", `Sandbox with ID or name ${idOrName} not found`);
    }
    return record;
  }

  /** Routes on one sandbox are answered by the node it lives on. */
  const oneSandbox = forSandboxResolvedBy(async (request) => {
    const { id } = (request as Route).params;
    return (await find(await authenticate(request), id))?.id;
  });

  app.post("/sandbox", async (request: FastifyRequest) => {
    const org = await authenticate(request);
    const body = parse(createSandboxSchema, request.body ?? {});
    const startup = startupOf(body, () => true);
    if ("template" in startup) {
      await templates.get(org.id, startup.template).catch((e: unknown) => {
        if (e instanceof ApiError && e.code === "template_not_found") {
          throw new ApiError("validation_failed", `Invalid request: snapshot: ${startup.template} not found`, {
            fields: [{ field: "snapshot", rule: "not_found", message: `${startup.template} not found` }],
          });
        }
        throw e;
      });
    }
    if (body.name !== undefined && (await find(org, body.name))) {
      throw new ApiError("conflict", `Sandbox with name ${body.name} already exists`);
    }
    const params = parse(createSandboxRequestSchema, createRequestFrom(body, startup));
    const { record } = await warmPools.createSandbox(org, params);
    return dto(request, record);
  });

  app.get("/sandbox", async (request: FastifyRequest) => {
    const org = await authenticate(request);
    const q = parse(listQuerySchema, request.query, "query");
    let labels: Record<string, string> = {};
    if (q.labels !== undefined) {
      const parsed = replaceLabelsSchema.shape.labels.safeParse(safeJson(q.labels));
      if (!parsed.success) {
        throw new ApiError("validation_failed", "Invalid request: labels: must be a JSON object of strings", {
          fields: [{ field: "labels", rule: "invalid_format", message: "must be a JSON object of strings" }],
        });
      }
      labels = parsed.data;
    }
    const states = typeof q.states === "string" ? q.states.split(",") : (q.states ?? []);
    const all = (await sandboxes.list(org, { metadata: labels, limit: 100_000 }))
      .filter((r) => (states.length ? states.includes(stateOf(r.status)) : true))
      .filter((r) => (q.id ? r.id === q.id : true))
      .filter((r) => (q.name ? (r.metadata[META.name] ?? r.id) === q.name : true));
    const offset = Number(q.cursor ?? 0);
    const page = all.slice(offset, offset + q.limit);
    const next = offset + q.limit < all.length ? String(offset + q.limit) : null;
    return { items: page.map((r) => dto(request, r)), nextCursor: next };
  });

  app.get("/sandbox/:id", oneSandbox, async (request: Route) => {
    const org = await authenticate(request);
    return dto(request, await byIdOrName(org, request.params.id));
  });

  app.delete("/sandbox/:id", oneSandbox, async (request: Route, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    await sandboxes.destroy(org, record.id);
    return reply.code(200).send();
  });

  app.post("/sandbox/:id/start", oneSandbox, async (request: Route) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    return dto(request, await sandboxes.resume(org, record.id));
  });

  app.post("/sandbox/:id/stop", oneSandbox, async (request: Route, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    await sandboxes.pause(org, record.id);
    return reply.code(200).send();
  });

  /** Archiving keeps a stopped sandbox's files; a paused Sandpit sandbox already keeps them on disk. */
  app.post("/sandbox/:id/archive", oneSandbox, async (request: Route, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    if (record.status !== "paused") {
      throw new ApiError("invalid_state", `Sandbox ${record.id} is ${stateOf(record.status)}; stop it first`);
    }
    return reply.code(200).send();
  });

  app.put("/sandbox/:id/labels", oneSandbox, async (request: Route) => {
    const org = await authenticate(request);
    const { labels } = parse(replaceLabelsSchema, request.body ?? {});
    const record = await live(org, request.params.id);
    const reserved = Object.keys(labels).find((k) => k.startsWith(META.prefix));
    if (reserved) {
      throw new ApiError(
        "validation_failed",
        `Invalid request: labels: ${reserved}: keys starting with ${META.prefix} are reserved`,
        {
          fields: [
            {
              field: `labels.${reserved}`,
              rule: "reserved",
              message: `keys starting with ${META.prefix} are reserved`,
            },
          ],
        },
      );
    }
    const patch: Record<string, string | null> = { ...labels };
    for (const key of Object.keys(labelsOf(record.metadata))) if (!(key in labels)) patch[key] = null;
    const updated = await sandboxes.updateMetadata(org, record.id, patch);
    return { labels: labelsOf(updated.metadata) };
  });

  app.get("/sandbox/:id/toolbox-proxy-url", oneSandbox, async (request: Route) => {
    const org = await authenticate(request);
    await live(org, request.params.id);
    return { url: toolboxUrlOf(request) };
  });

  /**
   * A port's preview link: Sandpit's port URL, working as returned — for a private sandbox it carries
   * the sandbox's traffic token (Daytona's preview token, also returned as `token`) in its query.
   */
  app.get("/sandbox/:id/ports/:port/preview-url", oneSandbox, async (request: Route) => {
    const org = await authenticate(request);
    const port = parse(portParamSchema, request.params.port, "query");
    const record = await live(org, request.params.id);
    const [link] = ports.urls(baseOf(request), record.id, [port]);
    const url = link!.hostUrl ?? link!.url;
    return {
      sandboxId: record.id,
      url: record.publicPorts ? url : `${url}?${TRAFFIC_TOKEN_QUERY}=${record.trafficToken}`,
      token: record.trafficToken,
    };
  });

  /** The SDK's event feed: Sandpit pushes no events; the SDK then polls `GET /sandbox/{id}` instead. */
  app.get("/socket.io/*", async () => {
    throw new ApiError(
      "not_implemented",
      "Sandpit does not push sandbox events over socket.io; the SDK polls the sandbox's state instead",
    );
  });

  /** Daytona features Sandpit does not have answer "not supported" in Daytona's shape, never "No route". */
  app.all("/sandbox/:id/*", async (request: Route) => {
    await authenticate(request);
    const what = (request.url.split("?")[0] ?? "").split("/").slice(5).join("/");
    throw new ApiError("not_implemented", `${request.method} /sandbox/{id}/${what} is not supported by Sandpit`);
  });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
