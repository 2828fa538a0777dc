import { defineConfig } from "vite";

// The server serves dist/ at /console (packages/server/src/routes/console.ts): asset URLs carry that prefix.
export default defineConfig({
  base: "/console/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  // `npm run dev -w @sandpit/console` next to a server on its default address: API calls and terminal
  // sockets are proxied there.
  server: { proxy: { "/v1": { target: "http://127.0.0.1:8080", ws: true } } },
});
