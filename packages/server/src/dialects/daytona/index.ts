import type { FastifyInstance } from "fastify";
import { type DaytonaApiServices, daytonaApiDialect } from "./api.js";
import { type DaytonaToolboxServices, daytonaToolboxDialect } from "./toolbox.js";

/** What the Daytona dialect uses: its API's and its toolbox's services. */
export type DaytonaServices = DaytonaApiServices & DaytonaToolboxServices;

/**
 * Daytona, spoken by Sandpit: the API under `/daytona/api` (the SDK's `DAYTONA_API_URL`) and each
 * sandbox's toolbox under `/daytona/toolbox/<id>` (the `toolboxProxyUrl` the API hands out).
 */
export function daytonaDialect(app: FastifyInstance, services: DaytonaServices) {
  daytonaApiDialect(app, services);
  daytonaToolboxDialect(app, services);
}
