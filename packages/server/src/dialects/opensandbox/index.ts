import type { FastifyInstance } from "fastify";
import { type EgressServices, egressDialect } from "./egress.js";
import { type ExecdServices, execdDialect } from "./execd.js";
import { type LifecycleServices, lifecycleDialect } from "./lifecycle.js";

/** What the OpenSandbox dialect uses: its three APIs' services. */
export type OpenSandboxServices = LifecycleServices & ExecdServices & EgressServices;

/**
 * OpenSandbox, spoken by Sandpit: the lifecycle API under `/opensandbox/v1` (the SDKs' OPEN_SANDBOX_DOMAIN
 * is `<host:port>/opensandbox`), and per sandbox the execd API and the egress sidecar under
 * `/opensandbox/execd/<id>` and `/opensandbox/egress/<id>`, which the endpoints call hands out.
 */
export function openSandboxDialect(app: FastifyInstance, services: OpenSandboxServices) {
  lifecycleDialect(app, services);
  execdDialect(app, services);
  egressDialect(app, services);
}
