export { buildApp } from "./app.js";
export { type Composition, createServices, type ServiceDrivers, wireServices } from "./composition.js";
export { loadConfig, type ServerConfig } from "./config.js";
export { openApiDocument } from "./routes/openapi.js";
export { createApiKey, type RunningServer, type StartServerOptions, startServer } from "./server.js";
export type { AppServices } from "./services/index.js";
export { TemplateService } from "./templates/template-service.js";
