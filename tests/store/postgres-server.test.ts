import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiClient, type SandboxBody } from "../helpers/api.js";
import { queryDatabase, startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let cluster: TestPostgres;
let databaseUrl: string;
let server: TestServer;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  cluster = await startPostgres();
  databaseUrl = await cluster.createDatabase("sandpit");
  server = await startTestServer({ SANDPIT_DATABASE_URL: databaseUrl });
  api = apiClient(server);
});

afterAll(async () => {
  await server?.close();
  await cluster?.close();
});

const query = <T>(sql: string, values: unknown[] = []) => queryDatabase<T>(databaseUrl, sql, values);

describe("a server on PostgreSQL", () => {
  it("keeps its sandboxes in the database, and picks them up again after kill -9", async () => {
    const sandbox = await api.createSandbox({ metadata: { store: "postgresql" }, timeoutMs: 600_000 });
    await api.put(`/v1/sandboxes/${sandbox.id}/files?path=/workspace/note.txt`, "kept in the sandbox");
    const first = await api.exec(sandbox.id, { command: "echo before crash" });
    expect(first.stdout).toBe("before crash\n");

    // The state is in PostgreSQL, not in a SQLite file of the data directory.
    expect(existsSync(path.join(server.dataDir, "sandpit.db"))).toBe(false);
    const [row] = await query<{ status: string; metadata_json: Record<string, string> }>(
      "SELECT status, metadata_json FROM sandboxes WHERE id = $1",
      [sandbox.id],
    );
    expect(row).toEqual({ status: "running", metadata_json: { store: "postgresql" } });
    const created = await query<{ type: string }>("SELECT type FROM events WHERE sandbox_id = $1", [sandbox.id]);
    expect(created.map((e) => e.type)).toEqual(["sandbox.created"]);

    await server.kill9();
    await server.restart();

    const after = await api.get<SandboxBody>(`/v1/sandboxes/${sandbox.id}`);
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ id: sandbox.id, status: "running", metadata: { store: "postgresql" } });
    const listed = await api.get<{ sandboxes: SandboxBody[] }>("/v1/sandboxes?metadata.store=postgresql");
    expect(listed.body.sandboxes.map((s) => s.id)).toEqual([sandbox.id]);
    expect((await api.exec(sandbox.id, { command: "cat /workspace/note.txt" })).stdout).toBe("kept in the sandbox");
    const commands = await api.get<{ commands: { commandId: string; exitCode: number | null }[] }>(
      `/v1/sandboxes/${sandbox.id}/commands`,
    );
    expect(commands.body.commands).toContainEqual(expect.objectContaining({ commandId: first.commandId, exitCode: 0 }));

    expect((await api.del(`/v1/sandboxes/${sandbox.id}`)).status).toBeLessThan(300);
    const events = await query<{ type: string }>("SELECT type FROM events WHERE sandbox_id = $1 ORDER BY id", [
      sandbox.id,
    ]);
    expect(events.map((e) => e.type)).toEqual(["sandbox.created", "sandbox.destroyed"]);
  });
});
