import { setTimeout as sleep } from "node:timers/promises";
import type { CreateSandboxParams, ErrorBody } from "@sandpit/contract";
import type { FastifyBaseLogger } from "fastify";
import type { NodeRecord, OrgRecord, Overcommit, SandboxRecord } from "../domain/index.js";
import { ApiError, errorEnvelope, NO_CAPACITY_RETRY_AFTER_S, noCapacity } from "../errors.js";
import { randomBase32 } from "../lib/ids.js";
import type { CreateLimits } from "../services/sandbox-service.js";
import type { Store } from "../store/store.js";
import type { NodeClient } from "./node-client.js";
import { type PlacementRequest, planPlacement } from "./placement.js";

/** A created sandbox, as the create entry point answers it (with its warm-pool checkout, if any). */
export interface PlacedSandbox {
  record: SandboxRecord;
  checkout?: { hit: boolean; poolId: string | null };
}

/** A create, as one node hands it to another. */
export interface CreateOrder {
  org: OrgRecord;
  params: CreateSandboxParams;
  limits: CreateLimits;
}

/** A create another node placed here (the internal API's body): the order and the offer it comes under. */
export interface PlacedCreate extends CreateOrder {
  offer: string;
}

/** At most this many nodes are tried for one create (each refusal is a race lost to another create). */
const MAX_ATTEMPTS = 3;
/** How long a create on another node may take (a first template build or image pull is minutes). */
const REMOTE_CREATE_TIMEOUT_MS = 15 * 60_000;
const OFFER_HASH = "sandbox-placement";
const offeredTo = (node: string) => `placement-offered:${node}`;
const takenBy = (node: string) => `placement-taken:${node}`;
const WITHDRAWN = "placement-withdrawn";

/** The node did not take the create (it could not be reached, or the offer was withdrawn first). */
class NodeDidNotTake extends Error {}

/**
 * Where a create runs: plans the nodes (cluster/placement.ts) and tries them in order — this node creates
 * itself, another one over the internal API. A create handed to another node goes under an offer kept in
 * the database (an idempotency key of the organisation): the receiving node takes the offer before it
 * creates and records the outcome under it; when the call fails without an answer, this node withdraws
 * the offer, and only a withdrawn offer lets it try another node. So a create never runs on two nodes,
 * whatever the network did to the call.
 */
export class SandboxPlacer {
  constructor(
    private readonly store: Store,
    private readonly nodeClient: NodeClient,
    private readonly overcommit: Overcommit,
    private readonly log: FastifyBaseLogger,
  ) {}

  /**
   * Creates on the best node that takes it: `here` on this node, otherwise the order goes to the node
   * chosen. 503 no_capacity when none does; 400 for a `placement.node` the cluster does not have.
   */
  async place(
    request: PlacementRequest,
    order: CreateOrder,
    here: () => Promise<PlacedSandbox>,
    warmReady?: ReadonlyMap<string, number>,
  ): Promise<PlacedSandbox> {
    const self = this.store.nodeId;
    const loads = await this.store.nodeLoads();
    if (request.node !== undefined && !loads.some((l) => l.node.id === request.node)) {
      const message = `no node ${request.node} in this cluster`;
      throw new ApiError("validation_failed", `Invalid request: placement.node: ${message}`, {
        fields: [{ field: "placement.node", rule: "unknown_node", message }],
      });
    }
    // A server that has not joined yet (it registers once it listens) places nothing elsewhere.
    if (!loads.some((l) => l.node.id === self) && request.node === undefined && !request.labels) return here();
    const plan = planPlacement(loads, request, { self, overcommit: this.overcommit, warmReady });
    const refused = [...plan.refused];
    for (const node of plan.candidates.slice(0, MAX_ATTEMPTS)) {
      try {
        return node.id === self ? await here() : await this.createOn(node, order);
      } catch (e) {
        if (e instanceof NodeDidNotTake || (e instanceof ApiError && e.code === "no_capacity")) {
          refused.push({ node: node.id, reason: e.message });
          continue;
        }
        throw e;
      }
    }
    const wanted = `${request.vcpus} vCPU, ${request.memoryMb} MB memory, ${request.diskMb} MB disk`;
    const where = [
      request.node !== undefined ? `node ${request.node}` : "",
      request.labels
        ? `labels ${Object.entries(request.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(",")}`
        : "",
    ].filter(Boolean);
    const scope = where.length ? `no node with ${where.join(" and ")}` : "no node of the cluster";
    throw noCapacity(
      `${scope} has room for this sandbox (${wanted}) now; retry in ${NO_CAPACITY_RETRY_AFTER_S} s or ask for less`,
      {
        requested: { vcpus: request.vcpus, memoryMb: request.memoryMb, diskMb: request.diskMb },
        nodes: refused,
      },
    );
  }

  /** Hands the order to another node under an offer; NodeDidNotTake when it did not take it. */
  private async createOn(node: NodeRecord, order: CreateOrder): Promise<PlacedSandbox> {
    const orgId = order.org.id;
    const offer = `sandpit-placement:${randomBase32(20)}`;
    await this.store.claimIdempotencyKey({
      orgId,
      key: offer,
      requestHash: OFFER_HASH,
      owner: offeredTo(node.id),
      createdAt: Date.now(),
    });
    try {
      const body: PlacedCreate = { ...order, offer };
      const answer = await this.nodeClient
        .call<PlacedSandbox | ErrorBody>(node, "POST", "/internal/v1/sandboxes", body, {
          timeoutMs: REMOTE_CREATE_TIMEOUT_MS,
        })
        .catch((e: unknown) => {
          this.log.warn({ err: e, node: node.id }, "create on another node got no answer");
          return undefined;
        });
      if (answer) return outcomeOf(answer.status, answer.body);
      if (await this.store.takeOverIdempotencyKey(orgId, offer, offeredTo(node.id), WITHDRAWN)) {
        throw new NodeDidNotTake(`node ${node.id} did not answer`);
      }
      return await this.awaitOutcome(orgId, offer, node);
    } finally {
      await this.store.releaseIdempotencyKey(orgId, offer).catch(() => undefined);
    }
  }

  /** The outcome a node that took an offer records, once it is there (or the node is gone). */
  private async awaitOutcome(orgId: string, offer: string, node: NodeRecord): Promise<PlacedSandbox> {
    const deadline = Date.now() + REMOTE_CREATE_TIMEOUT_MS;
    for (;;) {
      const key = await this.store.getIdempotencyKey(orgId, offer);
      if (key?.responseStatus != null) return outcomeOf(key.responseStatus, JSON.parse(key.responseBody ?? "null"));
      const load = (await this.store.nodeLoads()).find((l) => l.node.id === node.id);
      if (!key || !load?.leaseLive || load.node.state === "lost" || Date.now() > deadline) {
        throw new ApiError(
          "upstream_unavailable",
          `node ${node.id} stopped answering while it created the sandbox (it was not created on another node)`,
          { node: node.id },
        );
      }
      await sleep(250);
    }
  }

  /**
   * Runs a create another node placed here, under its offer: takes the offer (refused when the placing
   * node withdrew it), creates, and records the outcome where the placing node can read it.
   */
  async accept(create: PlacedCreate, work: () => Promise<PlacedSandbox>): Promise<PlacedSandbox> {
    const self = this.store.nodeId;
    const orgId = create.org.id;
    if (!(await this.store.takeOverIdempotencyKey(orgId, create.offer, offeredTo(self), takenBy(self)))) {
      throw new ApiError("conflict", "this create was withdrawn by the node that placed it");
    }
    try {
      const placed = await work();
      await this.store.completeIdempotencyKey(orgId, create.offer, 201, JSON.stringify(placed));
      return placed;
    } catch (e) {
      const error = e instanceof ApiError ? e : new ApiError("internal", "sandbox create failed");
      await this.store.completeIdempotencyKey(orgId, create.offer, error.status, JSON.stringify(errorEnvelope(error)));
      throw e;
    }
  }
}

/** A node's answer to a create order: the sandbox, or its error as this node's own. */
function outcomeOf(status: number, body: unknown): PlacedSandbox {
  if (status === 201) return body as PlacedSandbox;
  const error = (body as Partial<ErrorBody> | null)?.error;
  if (!error?.code) throw new ApiError("upstream_unavailable", `another node answered the create with ${status}`);
  const headers = error.code === "no_capacity" ? { "retry-after": String(NO_CAPACITY_RETRY_AFTER_S) } : undefined;
  throw new ApiError(error.code, error.message, error.details, headers);
}
