import { type NetworkPolicy, networkPolicySchema as sandpitPolicySchema } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { ApiError } from "../../errors.js";
import { forSandbox } from "../../http/sandbox-forwarding.js";
import type { AppServices } from "../../services/index.js";
import { type DialectContext, type DialectServices, registerDialect } from "../dialect.js";
import { execdErrorReply, unsupportedExecdPath } from "./errors.js";
import { accessSandbox } from "./execd-session.js";
import { EGRESS_PREFIX } from "./lifecycle.js";
import { egressModeOf, mergeRules, networkPolicyFrom, networkPolicyOf } from "./mapping.js";
import { deleteRulesSchema, type OpenSandboxNetworkPolicy, patchRulesSchema } from "./schemas.js";

type WithSandbox = FastifyRequest<{ Params: { sandboxId: string } }>;

/** What OpenSandbox's egress sidecar API uses. */
export type EgressServices = DialectServices & Pick<AppServices, "sandboxes">;

/**
 * OpenSandbox's egress sidecar `/policy` for every Sandpit sandbox, at `/opensandbox/egress/<sandboxId>`
 * (the endpoint handed out for port 18080): read the policy, patch rules, delete rules. Changes apply at
 * once through Sandpit's egress policy; credential brokering transforms set elsewhere are kept.
 */
export function egressDialect(app: FastifyInstance, services: EgressServices) {
  registerDialect(
    app,
    services,
    {
      name: "opensandbox-egress",
      prefix: EGRESS_PREFIX,
      apiKey: () => undefined,
      errorReply: (error) => execdErrorReply(error),
      unknownRoute: (request, path) => unsupportedExecdPath(request.method, path, EGRESS_PREFIX),
    },
    routes,
  );
}

function statusOf(policy: Required<OpenSandboxNetworkPolicy>) {
  return { status: "ok", mode: egressModeOf(policy), enforcementMode: "dns+nft", policy };
}

function routes({ app, services, parse }: DialectContext<EgressServices>) {
  const { sandboxes } = services;
  const open = (request: WithSandbox) => accessSandbox(services, request, request.params.sandboxId, "egress");

  /** Applies an OpenSandbox policy, keeping what it cannot express (transforms, allowed ports). */
  const apply = async (request: WithSandbox, next: Required<OpenSandboxNetworkPolicy>) => {
    const { org, record } = await open(request);
    const base = networkPolicyFrom(next) ?? { mode: "allow-all" as const };
    const current = record.networkPolicy;
    const kept = {
      ...(current.transforms?.length ? { transforms: current.transforms } : {}),
      ...(base.mode === "custom" && current.mode === "custom" && current.allow.ports.length
        ? { allow: { ...base.allow, ports: current.allow.ports } }
        : {}),
    };
    const policy: NetworkPolicy = parse(sandpitPolicySchema, { ...base, ...kept });
    const updated = await sandboxes.setNetworkPolicy(org, record.id, policy);
    return statusOf(networkPolicyOf(updated.networkPolicy));
  };

  app.get("/:sandboxId/policy", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const { record } = await open(request);
    return statusOf(networkPolicyOf(record.networkPolicy));
  });

  app.patch("/:sandboxId/policy", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const rules = parse(patchRulesSchema, request.body);
    if (rules.length === 0) throw new ApiError("bad_request", "at least one rule is required");
    const { record } = await open(request);
    return apply(request, mergeRules(networkPolicyOf(record.networkPolicy), rules));
  });

  app.delete("/:sandboxId/policy", forSandbox("sandboxId"), async (request: WithSandbox) => {
    const targets = new Set(parse(deleteRulesSchema, request.body).map((t) => t.toLowerCase()));
    const { record } = await open(request);
    const current = networkPolicyOf(record.networkPolicy);
    return apply(request, { ...current, egress: current.egress.filter((r) => !targets.has(r.target.toLowerCase())) });
  });

  app.all("/:sandboxId/credential-vault*", forSandbox("sandboxId"), async (request: WithSandbox) => {
    await open(request);
    throw new ApiError(
      "not_implemented",
      "the credential vault is not supported: use Sandpit's networkPolicy transforms for credential brokering",
    );
  });
}
