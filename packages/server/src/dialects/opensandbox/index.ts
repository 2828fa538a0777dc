import type { FastifyInstance } from "fastify";
import type { AppServices } from "../../app.js";
import { egressDialect } from "./egress.js";
import { execdDialect } from "./execd.js";
import { lifecycleDialect } from "./lifecycle.js";

/**
 * OpenSandbox, spoken by Sandpit: the lifecycle API under `/opensandbox/v1` (the SDKs' OPEN_SANDBOX_DOMAIN
 * is `<host:port>/opensandbox`), and per sandbox the execd API and the egress sidecar under
 * `/opensandbox/execd/<id>` and `/opensandbox/egress/<id>`, which the endpoints call hands out.
 */
export function openSandboxDialect(app: FastifyInstance, services: AppServices) {
  lifecycleDialect(app, services);
  execdDialect(app, services);
  egressDialect(app, services);
}
