import type { CreateSandboxParams } from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { NodeClient } from "../cluster/node-client.js";
import type { NodeMembership } from "../cluster/node-membership.js";
import { ApiError, validationError } from "../errors.js";
import type { SandboxMoves } from "../services/sandbox-moves.js";
import { toSandbox } from "../services/sandbox-service.js";
import type { WarmPoolService } from "../services/warm-pool-service.js";

/**
 * A create another node placed here. `params` were validated where the client's request arrived (the
 * native schema or a dialect's), by a node that signed this request: they are taken as they are.
 */
const placedCreateSchema = z.object({
  org: z.object({ id: z.string().min(1), name: z.string(), createdAt: z.number() }),
  params: z.custom<CreateSandboxParams>((p) => typeof p === "object" && p !== null && !Array.isArray(p)),
  limits: z.object({
    maxSandboxes: z.number().int().nonnegative().optional(),
    desktopStartedByClient: z.boolean().optional(),
  }),
  offer: z.string().min(1).max(255),
});

const adoptRequestSchema = z.object({
  from: z.string().min(1).describe("The node the sandbox lives on now"),
  resume: z.boolean().describe("Resume it here (it was running) or keep it paused"),
});

/**
 * The internal API under `/internal/v1`: what nodes of a cluster ask of each other. Every request must be
 * signed by a node (NodeClient): clients, whatever key they hold, get 401. Not in the OpenAPI document.
 */
export function internalRoutes(
  app: FastifyInstance,
  services: { nodeClient: NodeClient; membership: NodeMembership; warmPools: WarmPoolService; moves: SandboxMoves },
): void {
  app.register(
    async (internal) => {
      internal.addHook("onRequest", async (request) => {
        const caller = services.nodeClient.verify(request.headers, request.method, request.url);
        if (!caller || caller === "forged") {
          throw new ApiError("unauthorized", "the internal API answers only nodes of this cluster");
        }
      });

      /** This node as registered: lets a node check that another one answers and who it is. */
      internal.get("/node", async () => ({ node: services.membership.node ?? null }));

      /** Creates a sandbox here that another node placed on this one; answers its record (201). */
      internal.post("/sandboxes", async (request, reply) => {
        const parsed = placedCreateSchema.safeParse(request.body);
        if (!parsed.success) throw validationError(parsed.error);
        const placed = await services.warmPools.createPlaced(parsed.data);
        reply.code(201);
        return placed;
      });

      /**
       * Take a paused sandbox over from its node (draining, lost or gone) and, with `resume`, resume it
       * here from its image on shared storage. Answers the sandbox as it is here.
       */
      internal.post<{ Params: { id: string } }>("/sandboxes/:id/adopt", async (request) => {
        const parsed = adoptRequestSchema.safeParse(request.body);
        if (!parsed.success) throw validationError(parsed.error, "body");
        return { sandbox: toSandbox(await services.moves.adopt(request.params.id, parsed.data)) };
      });
    },
    { prefix: "/internal/v1" },
  );
}
