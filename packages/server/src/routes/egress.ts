import { type EgressLogEntry, egressLogQuerySchema, egressLogResponseSchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import type { EgressLogRecord, OrgRecord } from "../domain/index.js";
import { sendNdjson } from "../http/streaming.js";
import type { EgressAudit } from "../network/egress-audit.js";
import type { SandboxService } from "../services/sandbox-service.js";
import { type Authenticate, route } from "./route.js";

function toEntry(r: EgressLogRecord): EgressLogEntry {
  return {
    seq: r.seq,
    sandboxId: r.sandboxId,
    at: new Date(r.at).toISOString(),
    protocol: r.protocol,
    ip: r.ip,
    port: r.port,
    domain: r.domain,
    decision: r.decision,
    rule: r.rule,
    bytesOut: r.bytesOut,
    bytesIn: r.bytesIn,
    detail: r.detail,
  };
}

export function egressRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  audit: EgressAudit,
  sandboxes: SandboxService,
) {
  const answer = async (
    org: OrgRecord,
    query: z.output<typeof egressLogQuerySchema>,
    sandboxId: string | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ) => {
    const filter = {
      ...(sandboxId ? { sandboxId } : {}),
      ...(query.since ? { since: Date.parse(query.since) } : {}),
      ...(query.decision ? { decision: query.decision } : {}),
      ...(query.after !== undefined ? { afterSeq: query.after } : {}),
      limit: query.limit,
    };
    if (query.follow === "true") {
      const abort = new AbortController();
      await sendNdjson(
        request,
        reply,
        (async function* () {
          for await (const r of audit.follow(org.id, filter, abort.signal)) yield toEntry(r);
        })(),
        () => abort.abort(),
      );
      return undefined;
    }
    // Entries still being batched are written first, so that what happened is what is listed.
    await audit.flush();
    return { entries: (await audit.list(org.id, filter)).map(toEntry) };
  };

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/egress-log",
      summary:
        "Outbound connection attempts of the organisation's sandboxes: destination, domain, allowed or denied " +
        "and by which rule, bytes. follow=true streams new entries as NDJSON",
      tags: ["network"],
      query: egressLogQuerySchema,
      responses: {
        200: { description: "Entries (or an NDJSON stream with follow=true)", schema: egressLogResponseSchema },
      },
    },
    async ({ org, query, request, reply }) => answer(org, query, query.sandboxId, request, reply),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/egress-log",
      sandboxParam: "id",
      summary: "A sandbox's outbound connection attempts (see GET /v1/egress-log)",
      tags: ["network"],
      query: egressLogQuerySchema,
      responses: {
        200: { description: "Entries (or an NDJSON stream with follow=true)", schema: egressLogResponseSchema },
      },
    },
    async ({ org, params, query, request, reply }) => {
      await sandboxes.get(org, params.id!);
      return answer(org, query, params.id!, request, reply);
    },
  );
}
