import type { FastifyInstance } from "fastify";
import type { TrafficRouter } from "../../http/traffic-router.js";
import type { AppServices } from "../../services/index.js";
import { registerCodeInterpreter } from "./code-interpreter.js";
import { ENVD_PATH_PREFIX, registerEnvd, SANDBOX_ID_HEADER, SANDBOX_PORT_HEADER } from "./envd-http.js";
import { type E2bRestServices, e2bRestDialect } from "./rest.js";

/** What the E2B dialect uses: its REST API's services, envd's and the code interpreter's. */
export type E2bServices = E2bRestServices & Pick<AppServices, "exec" | "files" | "ports" | "code">;

/**
 * E2B, spoken by Sandpit: its REST API under `/e2b` (E2B_API_URL) and its sandbox URL under `/e2b/envd`
 * (E2B_SANDBOX_URL), where the `E2b-Sandbox-Port` header picks the port — envd (49983), the code
 * interpreter (49999), any other through the port proxy — as the host name `<port>-<id>.<SANDPIT_DOMAIN>` does.
 */
export function e2bDialect(app: FastifyInstance, traffic: TrafficRouter, services: E2bServices) {
  traffic.onHeaderTargets({
    prefix: ENVD_PATH_PREFIX,
    sandboxIdHeader: SANDBOX_ID_HEADER,
    portHeader: SANDBOX_PORT_HEADER,
  });
  registerEnvd(traffic, {
    sandboxes: services.sandboxes,
    files: services.files,
    exec: services.exec,
    maxUploadBytes: services.maxUploadBytes,
  });
  registerCodeInterpreter(traffic, { sandboxes: services.sandboxes, code: services.code });
  e2bRestDialect(app, services, services.ports.domain ?? null);
}
