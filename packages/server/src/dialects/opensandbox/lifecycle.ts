import { createSandboxRequestSchema, createVolumeRequestSchema, limits } from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { portPath } from "../../services/port-service.js";
import { type DialectContext, type DialectServices, registerDialect, singleHeader } from "../dialect.js";
import { lifecycleErrorReply } from "./errors.js";
import { CLIENT_SERVICES } from "./execd-session.js";
import {
  couldBeTemplateName,
  createdSandboxOf,
  createRequestFrom,
  EGRESS_PORT,
  EXECD_PORT,
  pageOf,
  parseMetadataFilter,
  resourcesFrom,
  type Startup,
  sandboxOf,
  snapshotOf,
  stateOf,
  statusesFor,
  templateAliasOf,
  volumesFrom,
} from "./mapping.js";
import {
  createSandboxSchema,
  createSnapshotSchema,
  endpointQuerySchema,
  listSandboxesQuerySchema,
  listSnapshotsQuerySchema,
  type OpenSandboxCreateSandbox,
  patchMetadataSchema,
  renewExpirationSchema,
} from "./schemas.js";

export const OPENSANDBOX_PREFIX = "/opensandbox";
/** Where execd and the egress sidecar of a sandbox are served: `<prefix>/<sandboxId>/…`. */
export const EXECD_PREFIX = `${OPENSANDBOX_PREFIX}/execd`;
export const EGRESS_PREFIX = `${OPENSANDBOX_PREFIX}/egress`;
export const API_KEY_HEADER = "open-sandbox-api-key";

const HOST_ARCH = process.arch === "arm64" ? "arm64" : "amd64";

/** A validation error in OpenSandbox's terms, optionally with its own error code. */
function invalid(field: string, message: string, code?: string): ApiError {
  return new ApiError("validation_failed", `Invalid request: ${field}: ${message}`, {
    fields: [{ field, rule: "invalid", message }],
    ...(code ? { dialectCode: code } : {}),
  });
}

/** Create-time features Sandpit does not have: a clear refusal naming the field, never a silent no-op. */
function refuseUnsupported(body: OpenSandboxCreateSandbox) {
  const unsupported = (field: string, message: string) => new ApiError("not_implemented", message, { field });
  if (body.credentialProxy?.enabled) {
    throw unsupported(
      "credentialProxy",
      "credentialProxy is not supported: use Sandpit's networkPolicy transforms for credential brokering",
    );
  }
  if (body.extensions?.poolRef !== undefined) {
    throw unsupported("extensions.poolRef", "extensions.poolRef is not supported: Sandpit picks warm pools itself");
  }
  if (body.extensions?.["access.renew.extend.seconds"] !== undefined) {
    throw unsupported("extensions.access.renew.extend.seconds", "renew-on-access is not supported yet");
  }
  if (body.platform && (body.platform.os !== "linux" || body.platform.arch !== HOST_ARCH)) {
    throw invalid("platform", `this server runs linux/${HOST_ARCH} sandboxes only`);
  }
}

/** What OpenSandbox's lifecycle API uses. */
export type LifecycleServices = DialectServices &
  Pick<AppServices, "sandboxes" | "warmPools" | "exec" | "templates" | "snapshots" | "volumes">;

/**
 * OpenSandbox's lifecycle API under `/opensandbox/v1` (set `OPEN_SANDBOX_DOMAIN=<host:port>/opensandbox`):
 * sandboxes (create, get, list, delete, pause, resume, renew-expiration, endpoints, metadata), snapshots, and the
 * SDK's create telemetry. Keys are Sandpit keys in `OPEN-SANDBOX-API-KEY`; errors are `{code, message}`.
 */
export function lifecycleDialect(app: FastifyInstance, services: LifecycleServices) {
  registerDialect(
    app,
    services,
    {
      name: "opensandbox",
      prefix: OPENSANDBOX_PREFIX,
      apiKey: (request) => singleHeader(request, API_KEY_HEADER),
      errorReply: (error, request) => lifecycleErrorReply(error, singleHeader(request, API_KEY_HEADER) !== undefined),
    },
    routes,
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<LifecycleServices>) {
  const { sandboxes, warmPools, exec, templates, snapshots, volumes } = services;

  /** The main process a sandbox was started with (its entrypoint), or none. */
  const entrypointOf = async (org: OrgRecord, record: SandboxRecord): Promise<string[]> => {
    if (!record.mainCommandId) return [];
    const main = (await exec.list(org, record.id)).find((c) => c.commandId === record.mainCommandId);
    return main?.command ?? [];
  };

  /** An existing sandbox of the caller; one already terminated counts as gone. */
  const live = async (org: OrgRecord, id: string): Promise<SandboxRecord> => {
    const record = await sandboxes.get(org, id);
    if (record.status === "destroyed") throw new ApiError("sandbox_not_found", `sandbox ${id} not found`);
    return record;
  };

  /** The image URI as one of Sandpit's templates when it names one (directly or by a known alias). */
  const startupOf = async (org: OrgRecord, body: OpenSandboxCreateSandbox): Promise<Startup> => {
    if (body.snapshotId) return { snapshotId: body.snapshotId };
    const image = body.image!;
    const alias = templateAliasOf(image.uri);
    if (alias) return { template: alias, imageUri: image.uri };
    if (couldBeTemplateName(image.uri)) {
      const template = await templates.get(org.id, image.uri).catch(() => undefined);
      if (template) return { template: template.name, imageUri: image.uri };
    }
    return { image: { uri: image.uri, ...(image.auth ? { auth: image.auth } : {}) } };
  };

  /** Makes the named volumes that do not exist yet (`pvc.createIfNotExists`); another create may race us. */
  const ensureVolumes = async (org: OrgRecord, wanted: { name: string; sizeMb: number }[]) => {
    for (const v of wanted) {
      const exists = await volumes.get(org, v.name).then(
        () => true,
        (e: unknown) => {
          if (e instanceof ApiError && e.code === "volume_not_found") return false;
          throw e;
        },
      );
      if (exists) continue;
      await volumes.create(org, parse(createVolumeRequestSchema, v)).catch((e: unknown) => {
        if (!(e instanceof ApiError && e.code === "conflict")) throw e;
      });
    }
  };

  /**
   * Runs a create; when the client went away before the answer (its request timed out), nobody knows
   * the new sandbox's id, so it is destroyed rather than left running until it expires.
   */
  const createForWaitingClient = async (reply: FastifyReply, create: () => Promise<SandboxRecord>) => {
    let gone = false;
    const onClose = () => {
      if (!reply.raw.writableFinished) gone = true;
    };
    reply.raw.once("close", onClose);
    const record = await create();
    reply.raw.off("close", onClose);
    // The client may have left before the listener was attached (during authentication or validation):
    // its socket then is already closed, and no "close" comes any more.
    const socket = reply.raw.socket;
    if (gone || reply.raw.destroyed || !socket || socket.destroyed) {
      await sandboxes.destroyById(record.id, "client_disconnected");
    }
    return record;
  };

  app.post("/v1/sandboxes", async (request, reply) => {
    const org = await authenticate(request);
    const body = parse(createSandboxSchema, request.body ?? {});
    refuseUnsupported(body);
    const { resources, issues } = resourcesFrom(body.resourceLimits);
    const volumes = volumesFrom(body.volumes);
    if (volumes.unsupported) {
      throw new ApiError("not_implemented", volumes.unsupported.message, { field: volumes.unsupported.field });
    }
    const problems = [...issues, ...volumes.issues];
    if (problems.length) {
      const summary = problems.map((i) => `${i.field}: ${i.message}`).join("; ");
      throw new ApiError("validation_failed", `Invalid request: ${summary}`, { fields: problems });
    }
    const native = createRequestFrom(body, await startupOf(org, body), resources, body.timeout ?? null, volumes.mounts);
    const params = parse(createSandboxRequestSchema, native);
    await ensureVolumes(org, volumes.wanted);
    const record = await createForWaitingClient(reply, async () => (await warmPools.createSandbox(org, params)).record);
    reply
      .code(202)
      .header("location", `${request.protocol}://${request.host}${OPENSANDBOX_PREFIX}/v1/sandboxes/${record.id}`);
    return createdSandboxOf(record, params.entrypoint ?? (await entrypointOf(org, record)));
  });

  app.get("/v1/sandboxes", async (request) => {
    const org = await authenticate(request);
    const q = parse(listSandboxesQuerySchema, request.query, "query");
    const statuses = q.state.length ? statusesFor(q.state) : undefined;
    const records =
      statuses?.length === 0
        ? []
        : await sandboxes.list(org, {
            ...(statuses ? { statuses } : {}),
            metadata: parseMetadataFilter(q.metadata),
            limit: 100_000,
          });
    const page = pageOf(records, q.page, q.pageSize);
    return {
      items: await Promise.all(page.items.map(async (r) => sandboxOf(r, await entrypointOf(org, r)))),
      pagination: page.pagination,
    };
  });

  app.get<{ Params: { id: string } }>("/v1/sandboxes/:id", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const record = await sandboxes.get(org, request.params.id);
    return sandboxOf(record, await entrypointOf(org, record));
  });

  app.delete<{ Params: { id: string } }>("/v1/sandboxes/:id", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    await live(org, request.params.id);
    await sandboxes.destroy(org, request.params.id);
    reply.code(204);
  });

  app.post<{ Params: { id: string } }>("/v1/sandboxes/:id/pause", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    if (record.status !== "running") {
      throw new ApiError(
        "invalid_state",
        `sandbox ${record.id} is ${stateOf(record.status)}; only a Running sandbox can be paused`,
      );
    }
    await sandboxes.pause(org, record.id);
    reply.code(202);
  });

  app.post<{ Params: { id: string } }>("/v1/sandboxes/:id/resume", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const record = await live(org, request.params.id);
    if (record.status !== "paused" && record.status !== "resuming") {
      throw new ApiError(
        "invalid_state",
        `sandbox ${record.id} is ${stateOf(record.status)}; only a Paused sandbox can be resumed`,
      );
    }
    await sandboxes.resume(org, record.id);
    reply.code(202);
  });

  app.post<{ Params: { id: string } }>("/v1/sandboxes/:id/renew-expiration", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const { expiresAt } = parse(renewExpirationSchema, request.body ?? {});
    const record = await live(org, request.params.id);
    if (record.lifecycle === "persistent") {
      throw new ApiError("invalid_state", `sandbox ${record.id} was created without a timeout: it does not expire`);
    }
    const target = Date.parse(expiresAt);
    const now = Date.now();
    if (target <= now) throw invalid("expiresAt", "must be in the future", "SANDBOX::INVALID_EXPIRATION");
    if (record.expiresAt !== null && target <= record.expiresAt) {
      throw invalid(
        "expiresAt",
        `must be after the current expiresAt (${new Date(record.expiresAt).toISOString()})`,
        "SANDBOX::EXPIRATION_NOT_EXTENDED",
      );
    }
    const timeoutMs = Math.max(limits.timeoutMs.min, target - now);
    if (timeoutMs > limits.timeoutMs.max) {
      throw invalid("expiresAt", "must be at most 24 hours from now", "SANDBOX::INVALID_EXPIRATION");
    }
    const updated = await sandboxes.setTimeout(org, record.id, timeoutMs);
    // A paused sandbox does not expire: its timeout starts again when it resumes.
    return { expiresAt: new Date(updated.expiresAt ?? target).toISOString() };
  });

  app.get<{ Params: { id: string; port: string } }>(
    "/v1/sandboxes/:id/endpoints/:port",
    forSandbox("id"),
    async (request) => {
      const org = await authenticate(request);
      const port = parse(z.coerce.number().int().min(1).max(65_535), request.params.port, "query");
      const q = parse(endpointQuerySchema, request.query, "query");
      if (q.expires !== undefined) {
        throw new ApiError("not_implemented", "signed endpoints (expires) are not supported: endpoints carry headers", {
          field: "expires",
        });
      }
      const record = await live(org, request.params.id);
      const host = request.host;
      if (port === EXECD_PORT) {
        return {
          endpoint: `${host}${EXECD_PREFIX}/${record.id}`,
          headers: { "X-EXECD-ACCESS-TOKEN": sandboxes.clientToken(record.id, CLIENT_SERVICES.execd) },
        };
      }
      if (port === EGRESS_PORT) {
        return {
          endpoint: `${host}${EGRESS_PREFIX}/${record.id}`,
          headers: { "OPENSANDBOX-EGRESS-AUTH": sandboxes.clientToken(record.id, CLIENT_SERVICES.egress) },
        };
      }
      if (!record.allPorts && !record.ports.includes(port)) {
        throw new ApiError("not_found", `port ${port} of sandbox ${record.id} is not exposed`);
      }
      // The token rides in the path, so that the URL works as returned ("ready to use") and with paths
      // appended; the header is handed out too for clients that send the endpoint's headers.
      if (record.publicPorts) return { endpoint: `${host}${portPath(record.id, port)}` };
      return {
        endpoint: `${host}${portPath(record.id, port, record.trafficToken)}`,
        headers: { "X-Sandpit-Traffic-Token": record.trafficToken },
      };
    },
  );

  app.patch<{ Params: { id: string } }>("/v1/sandboxes/:id/metadata", forSandbox("id"), async (request) => {
    const org = await authenticate(request);
    const patch = parse(patchMetadataSchema, request.body ?? {});
    await live(org, request.params.id);
    const updated = await sandboxes.updateMetadata(org, request.params.id, patch);
    return sandboxOf(updated, await entrypointOf(org, updated));
  });

  // ---- snapshots ----

  app.post<{ Params: { id: string } }>("/v1/sandboxes/:id/snapshots", forSandbox("id"), async (request, reply) => {
    const org = await authenticate(request);
    const { name } = parse(createSnapshotSchema, request.body ?? {});
    await live(org, request.params.id);
    const snapshot = await snapshots.create(org, request.params.id, name ?? null);
    reply
      .code(202)
      .header("location", `${request.protocol}://${request.host}${OPENSANDBOX_PREFIX}/v1/snapshots/${snapshot.id}`);
    return snapshotOf(snapshot);
  });

  app.get("/v1/snapshots", async (request) => {
    const org = await authenticate(request);
    const q = parse(listSnapshotsQuerySchema, request.query, "query");
    const wantedStates = new Set(q.state.map((s) => s.toLowerCase()));
    const items = (await snapshots.list(org))
      .map(snapshotOf)
      .filter((s) => (q.sandboxId ? s.sandboxId === q.sandboxId : true))
      .filter((s) => (q.name !== undefined ? s.name === q.name : true))
      .filter((s) => (wantedStates.size ? wantedStates.has(s.status.state.toLowerCase()) : true));
    return pageOf(items, q.page, q.pageSize);
  });

  app.get<{ Params: { id: string } }>("/v1/snapshots/:id", async (request) => {
    const org = await authenticate(request);
    return snapshotOf(await snapshots.get(org, request.params.id));
  });

  app.delete<{ Params: { id: string } }>("/v1/snapshots/:id", async (request, reply) => {
    const org = await authenticate(request);
    await snapshots.delete(org, request.params.id);
    reply.code(204);
  });

  // ---- SDK telemetry ----

  /** The SDK reports each create's latency here; Sandpit writes it to its log. */
  app.post("/v1/metrics/events", async (request: FastifyRequest, reply: FastifyReply) => {
    const org = await authenticate(request);
    const event = parse(
      z.object({
        eventType: z.string().max(64),
        sandboxId: z.string().max(64).optional(),
        image: z.string().max(1024).optional(),
        createDurationMs: z.number().min(0).optional(),
        success: z.boolean().optional(),
      }),
      request.body ?? {},
    );
    request.log.info({ orgId: org.id, userAgent: request.headers["user-agent"], event }, "opensandbox client event");
    reply.code(204);
  });
}
