import { createSandboxRequestSchema, type NetworkPolicy, networkPolicySchema } from "@sandpit/contract";
import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError, toApiError } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { sandboxLog } from "../../services/sandbox-log.js";
import { type DialectContext, registerDialect, singleHeader } from "../dialect.js";
import {
  createRequestFrom,
  listedSandboxOf,
  logEntryOf,
  logLineOf,
  metricOf,
  networkPolicyFrom,
  newSandboxSchema,
  parseMetadataQuery,
  parseStates,
  sandboxDetailOf,
  sandboxOf,
  stateOf,
  templateFrom,
} from "./mapping.js";
import { type E2bTemplateServices, e2bTemplateRoutes } from "./templates.js";
import { type E2bVolumeServices, e2bVolumeRoutes } from "./volumes.js";

const timeoutBodySchema = z.object({ timeout: z.number().int().min(0) }).passthrough();
const connectBodySchema = z.object({ timeout: z.number().int().min(0).optional() }).passthrough();
const refreshBodySchema = z.object({ duration: z.number().int().min(0).max(3600).optional() }).passthrough();
const metricsQuerySchema = z.object({
  start: z.coerce.number().int().min(0).optional(),
  end: z.coerce.number().int().min(0).optional(),
});
const snapshotBodySchema = z.object({ name: z.string().max(128).optional() }).passthrough();
const forkBodySchema = z
  .object({ count: z.number().int().min(1).max(20).default(1), timeout: z.number().int().min(0).optional() })
  .passthrough();
const listQuerySchema = z.object({
  metadata: z.string().optional(),
  state: z.union([z.string(), z.array(z.string())]).optional(),
  template: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  nextToken: z.string().optional(),
  order: z.enum(["asc", "desc"]).default("desc"),
  startedAfter: z.string().optional(),
});

const logsQuerySchema = z.object({
  start: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});
const logsV2QuerySchema = z.object({
  cursor: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  direction: z.enum(["forward", "backward"]).default("forward"),
  level: z.enum(["debug", "info", "warn", "error"]).optional(),
  search: z.string().optional(),
});
const LEVELS = ["debug", "info", "warn", "error"] as const;

const SNAPSHOT_ID = /^snp_[a-z2-7]{20}$/;

/** Seconds (E2B) → milliseconds within Sandpit's bounds. */
const timeoutMs = (seconds: number) => Math.min(24 * 3600, Math.max(1, seconds)) * 1000;

/** What E2B's REST API uses. */
export type E2bRestServices = E2bVolumeServices &
  E2bTemplateServices &
  Pick<AppServices, "sandboxes" | "warmPools" | "snapshots" | "metricsSampler" | "exec" | "events">;

/**
 * E2B's REST API under `/e2b` (set `E2B_API_URL=http://<sandpit>/e2b`): sandboxes (create, get, list,
 * kill, timeout, pause, connect/resume, refresh, network), snapshots, volumes and their content. Keys go in `X-API-KEY`; errors are
 * `{code, message}` with the HTTP status as the code.
 */
export function e2bRestDialect(
  app: Parameters<typeof registerDialect>[0],
  services: E2bRestServices,
  domain: string | null,
) {
  registerDialect(
    app,
    services,
    {
      name: "e2b",
      prefix: "/e2b",
      apiKey: (request) =>
        singleHeader(request, "x-api-key") ??
        (request.headers.authorization?.startsWith("Bearer ")
          ? request.headers.authorization.slice(7).trim()
          : undefined),
      errorReply: (error) => {
        const fields = (error.details?.fields as { field: string; message: string }[] | undefined) ?? [];
        const message = fields.length ? `${error.message}` : error.message;
        return { status: error.status, body: { code: error.status, message } };
      },
    },
    (ctx) => {
      routes(ctx, domain);
      e2bVolumeRoutes(ctx);
      e2bTemplateRoutes(ctx);
    },
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<E2bRestServices>, domain: string | null) {
  const { sandboxes, warmPools, snapshots } = services;

  /** A sandbox of the caller's organisation that is not destroyed; 404 otherwise. */
  const live = async (org: OrgRecord, id: string): Promise<SandboxRecord> => {
    const record = await sandboxes.get(org, id);
    if (record.status === "destroyed" || record.status === "destroying") {
      throw new ApiError("sandbox_not_found", `sandbox ${id} not found`);
    }
    return record;
  };

  const create = async (request: FastifyRequest, reply: FastifyReply) => {
    const org = await authenticate(request);
    const body = parse(newSandboxSchema, request.body);
    const native = createRequestFrom(body);
    const params = parse(
      createSandboxRequestSchema,
      SNAPSHOT_ID.test(body.templateID) ? { ...native, template: undefined, snapshotId: body.templateID } : native,
    );
    // `@e2b/desktop` starts its own display (its size, its Xfce): Sandpit's desktop adopts it on first use.
    const { record } = await warmPools.createSandbox(org, params, { desktopStartedByClient: true });
    reply.code(201);
    return sandboxOf(record, domain, sandboxes.clientToken(record.id, "e2b-envd"));
  };
  app.post("/sandboxes", create);
  app.post("/v2/sandboxes", create);

  const list = async (request: FastifyRequest, reply: FastifyReply, runningOnly: boolean) => {
    const org = await authenticate(request);
    const q = parse(listQuerySchema, request.query, "query");
    const states = runningOnly ? ["running"] : parseStates(q.state);
    const statuses = states.flatMap((s) =>
      s === "running" ? (["creating", "running", "resuming"] as const) : (["pausing", "paused"] as const),
    );
    let records = await sandboxes.list(org, {
      statuses: [...statuses],
      metadata: parseMetadataQuery(q.metadata),
      limit: 10_000,
    });
    if (q.template) {
      const template = templateFrom(q.template);
      records = records.filter((r) => r.template === template);
    }
    if (q.startedAfter) {
      const after = Date.parse(q.startedAfter);
      records = records.filter((r) => (r.startedAt ?? r.createdAt) >= after);
    }
    records.sort((a, b) => (q.order === "asc" ? a.createdAt - b.createdAt : b.createdAt - a.createdAt));
    const offset = q.nextToken ? Number(Buffer.from(q.nextToken, "base64url").toString()) || 0 : 0;
    const page = records.slice(offset, offset + q.limit);
    if (offset + q.limit < records.length) {
      reply.header("x-next-token", Buffer.from(String(offset + q.limit)).toString("base64url"));
    }
    reply.header("x-total-running", String(records.filter((r) => stateOf(r) === "running").length));
    return page.map(listedSandboxOf);
  };
  app.get("/sandboxes", (request, reply) => list(request, reply, true));
  app.get("/v2/sandboxes", (request, reply) => list(request, reply, false));

  app.get<{ Params: { id: string } }>("/sandboxes/:id", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    return sandboxDetailOf(record, domain, sandboxes.clientToken(record.id, "e2b-envd"));
  });

  app.delete<{ Params: { id: string } }>("/sandboxes/:id", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    await live(org, request.params.id);
    await sandboxes.destroy(org, request.params.id);
    reply.code(204);
  });

  app.post<{ Params: { id: string } }>("/sandboxes/:id/timeout", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const { timeout } = parse(timeoutBodySchema, request.body);
    await live(org, request.params.id);
    await sandboxes.setTimeout(org, request.params.id, timeoutMs(timeout));
    reply.code(204);
  });

  app.post<{ Params: { id: string } }>("/sandboxes/:id/refreshes", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const { duration } = parse(refreshBodySchema, request.body ?? {});
    const record = await live(org, request.params.id);
    const remaining = record.expiresAt ? record.expiresAt - Date.now() : 0;
    const wanted = timeoutMs(duration ?? 60);
    if (wanted > remaining) await sandboxes.setTimeout(org, record.id, wanted);
    reply.code(204);
  });

  app.post<{ Params: { id: string } }>("/sandboxes/:id/pause", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    if (record.status === "paused" || record.status === "pausing") {
      throw new ApiError("conflict", `sandbox ${record.id} is already paused`);
    }
    await sandboxes.pause(org, record.id);
    reply.code(204);
  });

  /** Resumes a paused sandbox (201) or extends a running one's timeout (200). */
  const connect = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    const org = await authenticate(request);
    const { timeout } = parse(connectBodySchema, request.body ?? {});
    let record = await live(org, request.params.id);
    const wasPaused = record.status === "paused" || record.status === "pausing";
    if (wasPaused) record = await sandboxes.resume(org, record.id);
    if (timeout !== undefined) record = await sandboxes.setTimeout(org, record.id, timeoutMs(timeout));
    reply.code(wasPaused ? 201 : 200);
    return sandboxOf(record, domain, sandboxes.clientToken(record.id, "e2b-envd"));
  };
  app.post("/sandboxes/:id/connect", forSandbox("id"), connect);
  app.post("/v2/sandboxes/:id/connect", forSandbox("id"), connect);
  app.post("/sandboxes/:id/resume", forSandbox("id"), connect);

  app.put<{ Params: { id: string } }>("/sandboxes/:id/network", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const body = parse(
      z.object({ allowOut: z.array(z.string()).optional(), denyOut: z.array(z.string()).optional() }).passthrough(),
      request.body ?? {},
    );
    await live(org, request.params.id);
    const policy: NetworkPolicy = parse(
      networkPolicySchema,
      networkPolicyFrom({ network: { allowOut: body.allowOut ?? [], denyOut: body.denyOut ?? [] } }) ?? {
        mode: "allow-all",
      },
    );
    await sandboxes.setNetworkPolicy(org, request.params.id, policy);
    reply.code(204);
  });

  app.post<{ Params: { id: string } }>("/sandboxes/:id/snapshots", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const { name } = parse(snapshotBodySchema, request.body ?? {});
    await live(org, request.params.id);
    const snapshot = await snapshots.create(org, request.params.id, name ?? null);
    reply.code(201);
    return { snapshotID: snapshot.id, names: [snapshot.name ?? snapshot.id] };
  });

  /** A sandbox's log as Sandpit gathers it (lifecycle events, commands, background output), also once it ended. */
  const logsOf = async (request: FastifyRequest<{ Params: { id: string } }>, since: number | undefined) => {
    const org = await authenticate(request);
    await sandboxes.get(org, request.params.id);
    return (await sandboxLog(services, org, request.params.id, since)).map(logEntryOf);
  };

  app.get<{ Params: { id: string } }>("/sandboxes/:id/logs", forSandbox("id"), async (request) => {
    const { start, limit } = parse(logsQuerySchema, request.query, "query");
    const entries = (await logsOf(request, start)).slice(0, limit);
    return { logEntries: entries, logs: entries.map(logLineOf) };
  });

  app.get<{ Params: { id: string } }>("/v2/sandboxes/:id/logs", forSandbox("id"), async (request) => {
    const q = parse(logsV2QuerySchema, request.query, "query");
    let entries = await logsOf(request, q.direction === "forward" ? q.cursor : undefined);
    if (q.direction === "backward") {
      entries = entries.filter((e) => q.cursor === undefined || Date.parse(e.timestamp) <= q.cursor).reverse();
    }
    const minimum = LEVELS.indexOf(q.level ?? "debug");
    entries = entries.filter((e) => LEVELS.indexOf(e.level) >= minimum);
    if (q.search !== undefined) entries = entries.filter((e) => e.message.includes(q.search ?? ""));
    return { logs: entries.slice(0, q.limit) };
  });

  app.get<{ Params: { id: string } }>("/sandboxes/:id/metrics", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const { start, end } = parse(metricsQuerySchema, request.query, "query");
    const record = await live(org, request.params.id);
    const { samples } = services.metricsSampler.metricsOf(
      record.id,
      start === undefined ? undefined : start * 1000 - 1,
    );
    return samples
      .filter((s) => end === undefined || Date.parse(s.at) <= end * 1000)
      .map((s) => metricOf(s, record.vcpus));
  });

  /** Forks succeed or fail one by one: each entry carries the sandbox or the error that stopped it. */
  app.post<{ Params: { id: string } }>("/sandboxes/:id/fork", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const { count, timeout } = parse(forkBodySchema, request.body ?? {});
    await live(org, request.params.id);
    const base = createSandboxRequestSchema.parse({});
    const results = await snapshots.forkEach(org, request.params.id, count, base, {
      timeoutMs: timeoutMs(timeout ?? 15),
    });
    reply.code(201);
    return results.map((r) => {
      if (r.status === "fulfilled")
        return { sandbox: sandboxOf(r.value, domain, sandboxes.clientToken(r.value.id, "e2b-envd")) };
      const error = toApiError(r.reason as Error, request);
      return { error: { code: error.status, message: error.message } };
    });
  });

  app.get("/snapshots", async (request) => {
    const org = await authenticate(request);
    return (await snapshots.list(org)).map((s) => ({ snapshotID: s.id, names: [s.name ?? s.id] }));
  });
}
