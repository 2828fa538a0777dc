import type { FastifyInstance } from "fastify";
import type { AppServices } from "../../app.js";
import { registerEnvd } from "./envd-http.js";
import { e2bRestDialect } from "./rest.js";

/**
 * E2B, spoken by Sandpit: its REST API under `/e2b` (E2B_API_URL) and its in-sandbox daemon under
 * `/e2b/envd` (E2B_SANDBOX_URL) or at `49983-<id>.<SANDPIT_DOMAIN>`.
 */
export function e2bDialect(app: FastifyInstance, services: AppServices) {
  registerEnvd(app, {
    sandboxes: services.sandboxes,
    files: services.files,
    exec: services.exec,
    ports: services.ports,
    maxUploadBytes: services.maxUploadBytes,
  });
  e2bRestDialect(app, services, services.ports.domain ?? null);
}
