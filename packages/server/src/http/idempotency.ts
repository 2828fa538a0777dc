import type { FastifyReply, FastifyRequest } from "fastify";
import { IdempotencyService } from "../services/idempotency-service.js";

declare module "fastify" {
  interface FastifyInstance {
    idempotency?: IdempotencyService;
  }
}

/** Requests that claimed an idempotency key: their response is stored when it is sent. */
const pendingKeys = new WeakMap<FastifyRequest, { orgId: string; key: string; service: IdempotencyService }>();

/** Stores the response of a request that claimed an idempotency key (call from an onSend hook). */
export async function recordIdempotentResponse(request: FastifyRequest, status: number, payload: unknown) {
  const pending = pendingKeys.get(request);
  if (!pending) return;
  pendingKeys.delete(request);
  const body = typeof payload === "string" ? payload : Buffer.isBuffer(payload) ? payload.toString() : "";
  await pending.service.finish(pending.orgId, pending.key, status, body);
}

/**
 * Claims an `Idempotency-Key` for this request: a retry of a finished request is answered with the
 * stored response (returns true: the reply is sent); otherwise the response this request sends is
 * stored for later retries. Dialects that take idempotency keys call it after validating the body.
 */
export async function claimIdempotencyKey(
  request: FastifyRequest,
  reply: FastifyReply,
  orgId: string,
  key: string,
): Promise<boolean> {
  const idempotency = request.server.idempotency;
  if (!idempotency) return false;
  const hash = IdempotencyService.hash(request.method, request.url, request.body);
  const outcome = await idempotency.begin(orgId, key, hash);
  if (outcome.kind === "replay") {
    reply.code(outcome.status).header("idempotent-replayed", "true").type("application/json");
    reply.send(outcome.body);
    return true;
  }
  pendingKeys.set(request, { orgId, key, service: idempotency });
  return false;
}
