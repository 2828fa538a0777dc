import path from "node:path";
import type { Readable } from "node:stream";
import {
  type CreateSandboxRequest,
  createSandboxRequestSchema,
  type ExecStreamEvent,
  limits,
  SANDBOX_ID_PATTERN,
  networkPolicySchema as sandpitPolicySchema,
} from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { forSandbox, forSandboxResolvedBy } from "../../http/sandbox-forwarding.js";
import { sendNdjson } from "../../http/streaming.js";
import { uploadBody } from "../../http/upload-limit.js";
import { FRAMING_ALLOWANCE } from "../../lib/upload-budget.js";
import type { ExecParams } from "../../services/exec-service.js";
import type { AppServices } from "../../services/index.js";
import { assertStatus } from "../../services/sandbox-service.js";
import { bearerToken, type DialectContext, type DialectServices, registerDialect, singleHeader } from "../dialect.js";
import {
  commandOf,
  createRequestFrom,
  defaultTimeoutOf,
  errorReplyOf,
  isPersistent,
  META,
  nameOf,
  REGION,
  sandboxOf,
  sessionOf,
  snapshotOf,
  type VercelCommand,
  type VercelRoute,
} from "./mapping.js";
import { toSandpitPolicy } from "./network-policy.js";
import { vercelCommandUser, vercelFiles } from "./sandbox-user.js";
import {
  createSandboxSchema,
  createSnapshotSchema,
  extendTimeoutSchema,
  forkSandboxSchema,
  killCommandSchema,
  listQuerySchema,
  networkPolicySchema,
  pathRequestSchema,
  runCommandSchema,
  updateSandboxSchema,
  type VercelCreateSandbox,
  type VercelListQuery,
} from "./schemas.js";
import { unpackArchive } from "./tar-upload.js";

export const VERCEL_PREFIX = "/vercel";

/** Path parameters and query of the dialect's routes (each route uses some of them). */
type Route = {
  Params: { id: string; cmdId: string; name: string };
  Querystring: Record<string, string | undefined>;
};
type Request = FastifyRequest<Route>;

function notSupported(field: string, what: string): ApiError {
  return new ApiError("not_implemented", `${field}: ${what} is not supported by Sandpit`, { field });
}

/** Create-time features of Vercel that Sandpit does not have: a clear 501 instead of a silent no-op. */
function refuseUnsupported(body: VercelCreateSandbox) {
  if (body.image !== undefined) {
    throw notSupported("image", "starting from a Vercel Container Registry image (use runtime)");
  }
  if (body.region !== undefined && body.region !== REGION) {
    throw notSupported("region", `a region other than "${REGION}"`);
  }
  if (body.failoverRegions?.length) throw notSupported("failoverRegions", "failing over to other regions");
  if (body.mounts && Object.keys(body.mounts).length) throw notSupported("mounts", "mounting drives");
  if (body.networkId !== undefined) throw notSupported("networkId", "joining a private network");
  if (body.snapshotExpiration !== undefined && body.snapshotExpiration !== 0) {
    throw notSupported("snapshotExpiration", "expiring snapshots (Sandpit keeps them until deleted)");
  }
  if (body.keepLastSnapshots !== undefined) throw notSupported("keepLastSnapshots", "snapshot retention policies");
  if (body.__interactive) {
    throw notSupported(
      "__interactive",
      "the sandbox CLI's interactive sessions (interactivePort; use `sandpit shell`)",
    );
  }
}

/** The Vercel paths of one page of a list, and the cursor of the next (an offset). */
function paginate<T>(items: T[], query: VercelListQuery) {
  const offset = Number(query.cursor ?? 0);
  const page = items.slice(offset, offset + query.limit);
  const next = offset + query.limit < items.length ? String(offset + query.limit) : null;
  return { page, pagination: { count: page.length, next } };
}

/** A `key:value` tag filter (the SDK sends one). */
function tagFilter(tags: string | string[] | undefined): Record<string, string> {
  const filter: Record<string, string> = {};
  for (const tag of typeof tags === "string" ? [tags] : (tags ?? [])) {
    const at = tag.indexOf(":");
    if (at <= 0) {
      throw new ApiError("validation_failed", "Invalid request: tags: must be key:value", {
        fields: [{ field: "tags", rule: "invalid_format", message: "must be key:value" }],
      });
    }
    filter[`${META.tagPrefix}${tag.slice(0, at)}`] = tag.slice(at + 1);
  }
  return filter;
}

/** What the Vercel dialect uses. */
export type VercelServices = DialectServices &
  Pick<AppServices, "sandboxes" | "exec" | "files" | "snapshots" | "warmPools" | "ports" | "maxUploadBytes">;

/**
 * Vercel Sandbox under `/vercel`: the official `@vercel/sandbox` SDK's REST API (named sandboxes,
 * sessions, commands with NDJSON output, files as gzip tar, network policies, snapshots) and the seed's
 * `POST /v1/sandboxes` with its session routes. A Vercel sandbox's session is a Sandpit sandbox (same id);
 * a stopped persistent sandbox is a paused Sandpit sandbox that the next call resumes. Keys are Sandpit
 * keys sent as the SDK's bearer token; `teamId`/`slug` are accepted and scoped by the key's organisation.
 */
export function vercelDialect(app: FastifyInstance, services: VercelServices) {
  registerDialect(
    app,
    services,
    {
      name: "vercel",
      prefix: VERCEL_PREFIX,
      apiKey: bearerToken,
      errorReply: (error, request) => errorReplyOf(error, bearerToken(request) !== undefined),
    },
    routes,
  );
}

function routes({ app, services, authenticate, parse }: DialectContext<VercelServices>) {
  const { sandboxes, exec, files, snapshots, warmPools, ports } = services;

  // The SDK sends `content-type: application/json` on bodiless POSTs (stop, snapshot): the app's JSON
  // parser reads an empty body as none, and these routes read none as {}.
  // fs/write bodies are streamed to the sandbox as they arrive.
  app.addContentTypeParser(
    ["application/gzip", "application/x-gzip", "application/octet-stream"],
    (_request, payload, done) => done(null, payload),
  );

  const routesOf = (request: FastifyRequest, r: SandboxRecord): VercelRoute[] => {
    const base = `${request.protocol}://${request.headers.host ?? request.hostname}`;
    return ports.urls(base, r.id, r.ports).map((p) => ({
      port: p.port,
      url: (p.hostUrl ?? p.url).replace(/\/$/, ""),
      // The SDK's `domain(port)` is `https://${subdomain}.vercel.run`: with a port host, the subdomain is that
      // host and a path ending in `#`, so that the `.vercel.run` the SDK appends is a fragment no server sees.
      subdomain: p.hostUrl ? `${p.hostUrl.replace(/^https?:\/\//, "")}#` : `${p.port}-${r.id}`,
    }));
  };

  /** Native validation of a translated request; its errors name the Vercel fields (see vercelField). */
  const toNative = (request: CreateSandboxRequest) => parse(createSandboxRequestSchema, request);

  const projectFilter = (request: Request): Record<string, string> =>
    request.query.projectId ? { [META.projectId]: request.query.projectId } : {};

  /** The live sandbox a name (or a session id) stands for, newest first; 404 when there is none. */
  async function byName(org: OrgRecord, name: string, projectId?: string): Promise<SandboxRecord> {
    const found = await findByName(org, name, projectId);
    if (found) return found;
    const ended = SANDBOX_ID_PATTERN.test(name)
      ? await sandboxes.get(org, name).catch(() => undefined)
      : (await sandboxes.list(org, { metadata: { [META.name]: name }, includeDestroyed: true, limit: 1 }))[0];
    if (ended && !isPersistent(ended)) {
      throw new ApiError("not_found", `Sandbox ${name} was not persistent: it ended when its session stopped`);
    }
    throw new ApiError("not_found", `Sandbox ${name} not found`);
  }

  async function findByName(org: OrgRecord, name: string, projectId?: string) {
    if (SANDBOX_ID_PATTERN.test(name)) {
      const record = await sandboxes.get(org, name).catch(() => undefined);
      return record && record.status !== "destroyed" ? record : undefined;
    }
    const metadata = { [META.name]: name, ...(projectId ? { [META.projectId]: projectId } : {}) };
    const [newest] = await sandboxes.list(org, { metadata, limit: 1 });
    return newest;
  }

  /** Routes that take a sandbox's name are answered by the node its newest session lives on. */
  const namedSandbox = forSandboxResolvedBy(async (request) => {
    const { params, query } = request as Request;
    return (await findByName(await authenticate(request), params.name, query.projectId))?.id;
  });

  /** Brings back a stopped persistent sandbox; its session gets the sandbox's default timeout again. */
  async function resume(org: OrgRecord, record: SandboxRecord): Promise<SandboxRecord> {
    const resumed = await sandboxes.resume(org, record.id);
    const timeout = defaultTimeoutOf(resumed);
    return resumed.timeoutMs === timeout ? resumed : sandboxes.setTimeout(org, record.id, timeout);
  }

  // --- Sandboxes (named) -------------------------------------------------------------------------

  const create = (version: "v1" | "v2") => async (request: Request) => {
    const org = await authenticate(request);
    const body = parse(createSandboxSchema(version), request.body ?? {});
    refuseUnsupported(body);
    if (body.source?.type === "snapshot" && body.resources) {
      const snapshot = await snapshots.get(org, body.source.snapshotId);
      if (snapshot.vcpus !== body.resources.vcpus) {
        throw notSupported("resources", "resizing a sandbox made from a snapshot (it keeps the snapshot's size)");
      }
    }
    if (body.name !== undefined && (await findByName(org, body.name, body.projectId))) {
      throw new ApiError("conflict", `A sandbox named ${body.name} already exists`);
    }
    const params = toNative(createRequestFrom(body, version !== "v1"));
    const { record } = await warmPools.createSandbox(org, params);
    const routes = routesOf(request, record);
    if (version === "v1") return { sandbox: sessionOf(record), routes };
    return { sandbox: sandboxOf(record), session: sessionOf(record), routes };
  };
  app.post<Route>("/v1/sandboxes", create("v1"));
  app.post<Route>("/v2/sandboxes", create("v2"));
  app.post<Route>("/v3/sandboxes", create("v2"));

  app.get<Route>("/v2/sandboxes", async (request) => {
    const org = await authenticate(request);
    const query = parse(listQuerySchema, request.query, "query");
    const project = query.project ?? query.projectId;
    const metadata = { ...(project ? { [META.projectId]: project } : {}), ...tagFilter(query.tags) };
    let records = await sandboxes.list(org, { metadata, limit: 1000 });
    if (query.namePrefix) records = records.filter((r) => nameOf(r).startsWith(query.namePrefix!));
    // A name whose sessions were replaced shows once, as its newest session.
    const seen = new Set<string>();
    records = records.filter((r) => !seen.has(nameOf(r)) && seen.add(nameOf(r)));
    if (query.sortBy === "name") records.sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
    if (query.sortOrder === "asc") records.reverse();
    const { page, pagination } = paginate(records, query);
    return { sandboxes: page.map(sandboxOf), pagination };
  });

  app.get<Route>("/v2/sandboxes/:name", namedSandbox, async (request) => {
    const org = await authenticate(request);
    let record = await byName(org, request.params.name, request.query.projectId);
    let resumed = false;
    if (request.query.resume === "true" && record.status === "paused") {
      record = await resume(org, record);
      resumed = true;
    }
    return { sandbox: sandboxOf(record), session: sessionOf(record), routes: routesOf(request, record), resumed };
  });

  app.patch<Route>("/v2/sandboxes/:name", namedSandbox, async (request) => {
    const org = await authenticate(request);
    const body = parse(updateSandboxSchema, request.body ?? {});
    for (const field of Object.keys(body)) {
      if (field !== "networkPolicy" && body[field as keyof typeof body] !== undefined) {
        throw notSupported(field, "changing this setting of an existing sandbox");
      }
    }
    let record = await byName(org, request.params.name, request.query.projectId);
    if (body.networkPolicy) record = await setPolicy(org, record.id, body.networkPolicy);
    return { sandbox: sandboxOf(record), routes: routesOf(request, record) };
  });

  app.delete<Route>("/v2/sandboxes/:name", namedSandbox, async (request) => {
    const org = await authenticate(request);
    const record = await byName(org, request.params.name, request.query.projectId);
    const live = SANDBOX_ID_PATTERN.test(request.params.name)
      ? [record]
      : await sandboxes.list(org, { metadata: { [META.name]: nameOf(record), ...projectFilter(request) } });
    for (const r of live) await sandboxes.destroy(org, r.id);
    return { sandbox: sandboxOf(await sandboxes.get(org, record.id)) };
  });

  app.get<Route>("/v2/sandboxes/sessions", async (request) => {
    const org = await authenticate(request);
    const query = parse(listQuerySchema, request.query, "query");
    const project = query.project ?? query.projectId;
    const metadata = {
      ...(project ? { [META.projectId]: project } : {}),
      ...(query.name && !SANDBOX_ID_PATTERN.test(query.name) ? { [META.name]: query.name } : {}),
    };
    let records = await sandboxes.list(org, { metadata, includeDestroyed: true, limit: 1000 });
    if (query.name && SANDBOX_ID_PATTERN.test(query.name)) records = records.filter((r) => nameOf(r) === query.name);
    if (query.sortOrder === "asc") records.reverse();
    const { page, pagination } = paginate(records, query);
    return { sessions: page.map(sessionOf), pagination };
  });

  /**
   * A new sandbox that continues the source as it is now (files, processes, memory: Sandpit's fork) under
   * its own name, or its session id when none is given. It copies the source's settings; of the SDK's
   * overrides only `name` and `timeout` are taken.
   */
  app.post<Route>("/v2/sandboxes/:name/fork", namedSandbox, async (request) => {
    const org = await authenticate(request);
    const { name, timeout, ...overrides } = parse(forkSandboxSchema, request.body ?? {});
    for (const [field, value] of Object.entries(overrides)) {
      if (value !== undefined) throw notSupported(field, "overriding a setting the fork copies from its source");
    }
    const source = await byName(org, request.params.name, request.query.projectId);
    if (name !== undefined && (await findByName(org, name, source.metadata[META.projectId]))) {
      throw new ApiError("conflict", `A sandbox named ${name} already exists`);
    }
    const { [META.name]: _name, [META.sourceSnapshotId]: _snapshot, ...copied } = source.metadata;
    const metadata = {
      ...copied,
      ...(name !== undefined ? { [META.name]: name } : {}),
      ...(timeout !== undefined ? { [META.timeout]: String(timeout) } : {}),
    };
    const base = createSandboxRequestSchema.parse({
      ports: source.ports,
      publicPorts: source.publicPorts,
      timeoutAction: source.timeoutAction,
    });
    const [result] = await snapshots.forkEach(org, source.id, 1, base, {
      timeoutMs: timeout ?? defaultTimeoutOf(source),
      metadata,
    });
    if (result!.status === "rejected") throw result!.reason;
    const record = result!.value;
    return { sandbox: sandboxOf(record), session: sessionOf(record), routes: routesOf(request, record) };
  });

  for (const unsupported of ["/v2/sandboxes/drives", "/v2/sandboxes/drives/:name"]) {
    app.all<Route>(unsupported, async (request) => {
      await authenticate(request);
      throw new ApiError("not_implemented", `${request.method} ${unsupported} is not supported by Sandpit`);
    });
  }

  // --- Sessions: the seed's /v1/sandboxes/{id}/… and the SDK's /v2/sandboxes/sessions/{id}/… ----------

  async function setPolicy(org: OrgRecord, id: string, body: unknown) {
    const policy = toSandpitPolicy(parse(networkPolicySchema, body));
    const { networkPolicy } = parse(z.object({ networkPolicy: sandpitPolicySchema }), { networkPolicy: policy });
    return sandboxes.setNetworkPolicy(org, id, networkPolicy);
  }

  /** A path of the request, relative ones resolved against the given or the session's working directory. */
  const resolvePath = (record: SandboxRecord, p: string, cwd?: string) =>
    path.posix.resolve(cwd ? path.posix.resolve(record.cwd, cwd) : record.cwd, p);

  for (const { base, key } of [
    { base: "/v1/sandboxes/:id", key: "sandbox" },
    { base: "/v2/sandboxes/sessions/:id", key: "session" },
  ] as const) {
    const wrap = (r: SandboxRecord) => ({ [key]: sessionOf(r) });

    app.get<Route>(base, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const record = await sandboxes.get(org, request.params.id);
      return { ...wrap(record), routes: routesOf(request, record) };
    });

    app.post<Route>(`${base}/cmd`, forSandbox("id"), async (request, reply) => {
      const org = await authenticate(request);
      const body = parse(runCommandSchema, request.body ?? {});
      const record = await sandboxes.get(org, request.params.id);
      const cwd = body.cwd ? path.posix.resolve(record.cwd, body.cwd) : record.cwd;
      const params: ExecParams = {
        args: [body.command, ...body.args],
        cwd,
        env: body.env,
        ...(body.timeout !== undefined ? { timeoutMs: body.timeout } : {}),
        user: await vercelCommandUser({ exec, files }, org, record, body.sudo ?? false),
      };
      if (!body.wait) {
        const started = await exec.startBackground(org, record.id, { ...params, background: true });
        return { command: commandOf(await exec.get(org, record.id, started.commandId)) };
      }
      const abort = new AbortController();
      const command = { name: body.command, args: body.args, cwd, sessionId: record.id };
      const events = exec.stream(org, record.id, params, abort.signal);
      await sendNdjson(request, reply, commandLines(events, command, body.logs), () => abort.abort());
      return reply;
    });

    app.get<Route>(`${base}/cmd/:cmdId`, forSandbox("id"), async (request, reply) => {
      const org = await authenticate(request);
      const { id, cmdId } = request.params;
      if (request.query.wait === "true") {
        const abort = new AbortController();
        reply.raw.on("close", () => {
          if (!reply.sent) abort.abort();
        });
        // The command's output ends when the command does: following it to the end is the wait.
        for await (const _ of exec.logs(org, id, cmdId, abort.signal)) {
          // output is not part of this answer
        }
      }
      const command = commandOf(await exec.get(org, id, cmdId));
      if (request.query.wait === "true" && command.exitCode === null) {
        throw new ApiError("conflict", `command ${cmdId} ended without an exit status (the sandbox lost it)`);
      }
      return { command };
    });

    app.post<Route>(`${base}/cmd/:cmdId/kill`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const { signal } = parse(killCommandSchema, request.body ?? {});
      await exec.kill(org, request.params.id, request.params.cmdId, signal);
      return { command: commandOf(await exec.get(org, request.params.id, request.params.cmdId)) };
    });

    app.get<Route>(`${base}/cmd/:cmdId/logs`, forSandbox("id"), async (request, reply) => {
      const org = await authenticate(request);
      const { id, cmdId } = request.params;
      // Checked up front: the stream starts at once, since a command may be quiet for long.
      await exec.get(org, id, cmdId);
      await sandboxes.requireUsable(org, id);
      const abort = new AbortController();
      const events = exec.logs(org, id, cmdId, abort.signal);
      await sendNdjson(request, reply, logLines(events), () => abort.abort(), { startAtOnce: true });
      return reply;
    });

    app.post<Route>(`${base}/fs/mkdir`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const body = parse(pathRequestSchema, request.body ?? {});
      const record = await sandboxes.get(org, request.params.id);
      const { sandboxFiles, owner } = await vercelFiles({ exec, files }, org, record);
      await sandboxFiles.mkdir(resolvePath(record, body.path, body.cwd), owner);
      return {};
    });

    app.post<Route>(`${base}/fs/read`, forSandbox("id"), async (request, reply) => {
      const org = await authenticate(request);
      const body = parse(pathRequestSchema, request.body ?? {});
      const record = await sandboxes.get(org, request.params.id);
      const file = await files.read(org, record.id, resolvePath(record, body.path, body.cwd));
      reply.header("content-type", "application/octet-stream").header("content-length", file.size);
      return reply.send(file.body);
    });

    app.post<Route>(`${base}/fs/write`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      if (!(request.body && typeof (request.body as Readable).pipe === "function")) {
        throw new ApiError(
          "bad_request",
          "the body must be a gzip-compressed tar archive (Content-Type: application/gzip)",
        );
      }
      const extractDir = singleHeader(request, "x-cwd") ?? "/";
      if (!extractDir.startsWith("/")) {
        throw new ApiError("validation_failed", "Invalid request: x-cwd: must be an absolute path", {
          fields: [{ field: "x-cwd", rule: "invalid_format", message: "must be an absolute path" }],
        });
      }
      const record = await sandboxes.requireUsable(org, request.params.id);
      // The archive as sent may be as large as what it holds, plus its headers.
      const { body } = uploadBody(request.raw, services.maxUploadBytes, FRAMING_ALLOWANCE);
      const { sandboxFiles, owner } = await vercelFiles({ exec, files }, org, record);
      await unpackArchive(body, extractDir, services.maxUploadBytes, {
        writeFile: (p, content, size, mode) =>
          sandboxFiles.write(p, content, { mkdirs: true, size, ...(mode !== undefined ? { mode } : {}), ...owner }),
        mkdir: (p, mode) => sandboxFiles.mkdir(p, { parents: true, ...(mode !== undefined ? { mode } : {}), ...owner }),
      });
      return {};
    });

    app.post<Route>(`${base}/stop`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const record = await sandboxes.get(org, request.params.id);
      // A persistent sandbox keeps its state for the next session; any other ends with its session.
      if (!isPersistent(record)) await sandboxes.destroy(org, record.id);
      else if (record.status === "running" || record.status === "pausing") await sandboxes.pause(org, record.id);
      const after = await sandboxes.get(org, record.id);
      return key === "session" ? { ...wrap(after), sandbox: sandboxOf(after) } : wrap(after);
    });

    app.post<Route>(`${base}/extend-timeout`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const { duration } = parse(extendTimeoutSchema, request.body ?? {});
      const record = await sandboxes.get(org, request.params.id);
      assertStatus(record, ["running"], "extend the timeout of");
      // Sandpit's timeout runs from now: the remaining time plus the extension.
      const timeoutMs = Math.max((record.expiresAt ?? Date.now()) - Date.now(), 0) + duration;
      if (timeoutMs > limits.timeoutMs.max) {
        const message = `would run the session past the maximum of ${limits.timeoutMs.max} ms from now`;
        throw new ApiError("validation_failed", `Invalid request: duration: ${message}`, {
          fields: [{ field: "duration", rule: "too_big", message }],
        });
      }
      return wrap(await sandboxes.setTimeout(org, record.id, Math.max(timeoutMs, limits.timeoutMs.min)));
    });

    app.post<Route>(`${base}/network-policy`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const record = await sandboxes.get(org, request.params.id);
      return wrap(await setPolicy(org, record.id, request.body ?? {}));
    });

    app.post<Route>(`${base}/snapshot`, forSandbox("id"), async (request) => {
      const org = await authenticate(request);
      const body = parse(createSnapshotSchema, request.body ?? {});
      if (body.expiration !== undefined && body.expiration !== 0) {
        throw notSupported("expiration", "expiring snapshots (Sandpit keeps them until deleted; pass 0)");
      }
      const record = await sandboxes.get(org, request.params.id);
      assertStatus(record, ["running", "paused"], "snapshot");
      // As on Vercel, snapshotting stops the session: paused first, it is copied as it is.
      if (record.status === "running") await sandboxes.pause(org, record.id);
      const snapshot = await snapshots.create(org, record.id, null);
      if (!isPersistent(record)) await sandboxes.destroy(org, record.id);
      return { snapshot: snapshotOf(snapshot), ...wrap(await sandboxes.get(org, record.id)) };
    });

    app.post<Route>(`${base}/interactive`, forSandbox("id"), async (request) => {
      await authenticate(request);
      throw new ApiError(
        "not_implemented",
        "interactive shells in Vercel's protocol are not supported by Sandpit (use its terminals API)",
      );
    });
  }

  // --- Snapshots -----------------------------------------------------------------------------------

  for (const base of ["/v1/sandboxes/snapshots", "/v2/sandboxes/snapshots"]) {
    app.get<Route>(base, async (request) => {
      const org = await authenticate(request);
      const query = parse(listQuerySchema, request.query, "query");
      const project = query.project ?? query.projectId;
      let list = (await snapshots.list(org)).filter((s) => s.status !== "creating");
      if (query.name || project) {
        const metadata = {
          ...(project ? { [META.projectId]: project } : {}),
          ...(query.name ? { [META.name]: query.name } : {}),
        };
        const sessions = await sandboxes.list(org, { metadata, includeDestroyed: true, limit: 1000 });
        const ids = new Set(sessions.map((s) => s.id));
        if (query.name && SANDBOX_ID_PATTERN.test(query.name)) ids.add(query.name);
        list = list.filter((s) => ids.has(s.sourceSandboxId));
      }
      list.sort((a, b) => (query.sortOrder === "asc" ? a.createdAt - b.createdAt : b.createdAt - a.createdAt));
      const { page, pagination } = paginate(list, query);
      return { snapshots: page.map((s) => snapshotOf(s)), pagination };
    });

    app.get<Route>(`${base}/tree`, async (request) => {
      await authenticate(request);
      throw new ApiError("not_implemented", "snapshot trees are not supported by Sandpit");
    });

    app.get<Route>(`${base}/:id`, async (request) => {
      const org = await authenticate(request);
      const snapshot = await snapshots.get(org, request.params.id);
      if (snapshot.status === "creating") {
        throw new ApiError("invalid_state", `snapshot ${snapshot.id} is still being created`);
      }
      return { snapshot: snapshotOf(snapshot) };
    });

    app.delete<Route>(`${base}/:id`, async (request) => {
      const org = await authenticate(request);
      const snapshot = await snapshots.get(org, request.params.id);
      await snapshots.delete(org, snapshot.id);
      return { snapshot: snapshotOf(snapshot, true) };
    });
  }
}

type CommandStart = Pick<VercelCommand, "name" | "args" | "cwd" | "sessionId">;

/** A stream failure after the response started, as Vercel's error line. */
function errorLine(e: unknown) {
  const { code, message } =
    e instanceof ApiError ? errorReplyOf(e, true).body.error : { code: "internal_server_error", message: String(e) };
  return { stream: "error" as const, data: { code, message } };
}

/**
 * A command run with `wait: true`, as Vercel's NDJSON: `{command}` when it starts, `{stream, data}` per
 * output chunk (with `logs: true`), `{command}` with its exit code at the end. Failures before the start
 * are HTTP errors; later ones an `error` line.
 */
async function* commandLines(events: AsyncIterable<ExecStreamEvent>, start: CommandStart, logs: boolean) {
  let command: VercelCommand | undefined;
  try {
    for await (const e of events) {
      if (e.type === "start") {
        command = { id: e.commandId, ...start, exitCode: null, startedAt: Date.now() };
        yield { command };
      } else if (!command) {
        // The agent reports a command that could not start (no such program) before any start event.
        if (e.type === "error") throw new ApiError("bad_request", `${start.name}: ${e.message}`);
      } else if (e.type === "exit") {
        yield { command: { ...command, exitCode: e.exitCode, durationMs: e.durationMs } };
      } else if (logs && (e.type === "stdout" || e.type === "stderr")) {
        yield { stream: e.type, data: e.data };
      } else if (logs && e.type === "error") {
        yield { stream: "stderr" as const, data: `${e.message}\n` };
      }
    }
  } catch (e) {
    if (!command) throw e;
    yield errorLine(e);
  }
}

/** A command's output as Vercel's log lines `{stream, data}`; a failure is an `error` line. */
async function* logLines(events: AsyncIterable<ExecStreamEvent>) {
  try {
    for await (const e of events) {
      if (e.type === "stdout" || e.type === "stderr") yield { stream: e.type, data: e.data };
      else if (e.type === "error") yield { stream: "stderr" as const, data: `${e.message}\n` };
    }
  } catch (e) {
    yield errorLine(e);
  }
}
