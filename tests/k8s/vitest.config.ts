// `npm run test:k8s` only (tests/k8s/run.sh starts the cluster first): these files end in .k8s.ts so that
// the integration project's tests/**/*.test.ts never picks them up.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/k8s/**/*.k8s.ts"],
    // The built templates the node pod mounts (tests/k8s/overlay), built here when missing.
    globalSetup: ["tests/helpers/global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 300_000,
  },
});
