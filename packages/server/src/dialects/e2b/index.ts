import type { FastifyInstance } from "fastify";
import type { TrafficRouter } from "../../http/traffic-router.js";
import type { AppServices } from "../../services/index.js";
import { registerEnvd } from "./envd-http.js";
import { type E2bRestServices, e2bRestDialect } from "./rest.js";

/** What the E2B dialect uses: its REST API's services and envd's. */
export type E2bServices = E2bRestServices & Pick<AppServices, "exec" | "files" | "ports">;

/**
 * E2B, spoken by Sandpit: its REST API under `/e2b` (E2B_API_URL) and its in-sandbox daemon under
 * `/e2b/envd` (E2B_SANDBOX_URL) or at `49983-<id>.<SANDPIT_DOMAIN>`.
 */
export function e2bDialect(app: FastifyInstance, traffic: TrafficRouter, services: E2bServices) {
  registerEnvd(traffic, {
    sandboxes: services.sandboxes,
    files: services.files,
    exec: services.exec,
    maxUploadBytes: services.maxUploadBytes,
  });
  e2bRestDialect(app, services, services.ports.domain ?? null);
}
