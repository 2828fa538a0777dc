import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply } from "fastify";
import { ApiError } from "../errors.js";

const PREFIX = "/console";

/**
 * The console's page may only load its own scripts and styles and talk to this server (the API and the
 * terminal WebSockets). Inline styles: xterm.js sizes its rows with a generated <style> element. Frames:
 * with a domain, the sandboxes' port hosts (`{port}-{id}.{domain}`), where the desktop live view is served
 * on an origin of its own.
 */
export function contentSecurityPolicy(domain: string | undefined): string {
  return [
    "default-src 'self'",
    "connect-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    ...(domain ? [`frame-src 'self' http://*.${domain}:* https://*.${domain}:*`] : []),
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join("; ");
}

/**
 * Where the built console is: the `dist/` of the `@sandpit/console` package as Node resolves it from here
 * (a dependency of the server), else the sibling package in this repository. Undefined when not built.
 */
export function consoleDistDir(): string | undefined {
  const candidates: string[] = [];
  try {
    const manifest = createRequire(import.meta.url).resolve("@sandpit/console/package.json");
    candidates.push(path.join(path.dirname(manifest), "dist"));
  } catch {
    // Not installed as a package: only the repository layout is left to try.
  }
  // src/routes/console.ts and dist/routes/console.js are both three levels below packages/.
  candidates.push(path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../console/dist"));
  return candidates.find((dir) => existsSync(path.join(dir, "index.html")));
}

/**
 * The web console at /console: the static files of packages/console, and index.html for every other
 * path below it (the app routes in the browser). It calls the same /v1 API with the user's key.
 */
export function consoleRoutes(app: FastifyInstance, domain: string | undefined, distDir = consoleDistDir()) {
  const policy = contentSecurityPolicy(domain);
  app.register(
    async (scope) => {
      if (!distDir) {
        const notBuilt = async () => {
          throw new ApiError("not_found", "the web console is not built: `npm run build` builds packages/console");
        };
        scope.get("/", notBuilt);
        scope.get("/*", notBuilt);
        return;
      }
      await scope.register(fastifyStatic, {
        root: distDir,
        prefix: "/",
        index: false,
        // Cache-Control is chosen per file below.
        cacheControl: false,
        setHeaders(res, file) {
          res.setHeader("x-content-type-options", "nosniff");
          res.setHeader("referrer-policy", "no-referrer");
          if (file.endsWith(".html")) {
            res.setHeader("content-security-policy", policy);
            res.setHeader("cache-control", "no-cache");
          } else if (file.startsWith(path.join(distDir, "assets") + path.sep)) {
            // Vite names assets by content hash: a name never changes content.
            res.setHeader("cache-control", "public, max-age=31536000, immutable");
          }
        },
      });
      const sendApp = (reply: FastifyReply) => reply.sendFile("index.html");
      scope.get("/", (_request, reply) => sendApp(reply));
      scope.setNotFoundHandler((request, reply) => {
        const url = request.url.split("?")[0]!;
        // A missing build asset is a real 404 (an old page asking for a replaced file), not a page.
        if (request.method !== "GET" || url.startsWith(`${PREFIX}/assets/`)) {
          reply.code(404).send({ error: { code: "not_found", message: `No route for ${request.method} ${url}` } });
          return;
        }
        sendApp(reply);
      });
    },
    { prefix: PREFIX },
  );
}
