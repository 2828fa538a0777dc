export { buildApp } from "./app.js";
export { loadConfig, type ServerConfig } from "./config.js";
export { createApiKey, startServer, type RunningServer, type StartServerOptions } from "./server.js";
export { openApiDocument } from "./routes/openapi.js";
export { TemplateService } from "./templates/template-service.js";
