import { afterAll, beforeAll } from "vitest";
import { apiClient } from "./api.js";
import { startTestServer, type TestServer } from "./server.js";

/**
 * Starts a test server for the file (beforeAll) and closes it (afterAll); `use` receives the server and
 * an API client with its key.
 */
export function useTestServer(
  use: (server: TestServer, api: ReturnType<typeof apiClient>) => void,
  extraEnv: Record<string, string> = {},
) {
  let server: TestServer | undefined;
  beforeAll(async () => {
    server = await startTestServer(extraEnv);
    use(server, apiClient(server));
  });
  afterAll(async () => {
    await server?.close();
  });
}
