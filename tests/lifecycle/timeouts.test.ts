import { describe, expect, it } from "vitest";
import { type apiClient, type ErrorBody, type SandboxBody, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let _server: TestServer;
let api: ReturnType<typeof apiClient>;

useTestServer((s, a) => {
  _server = s;
  api = a;
});

const statusOf = async (id: string) => (await api.get<SandboxBody & { lifecycle: string }>(`/v1/sandboxes/${id}`)).body;
const untilStatus = (id: string, status: string, ms = 20_000) =>
  waitFor(
    async () => {
      const s = await statusOf(id);
      return s.status === status ? s : undefined;
    },
    ms,
    `status ${status}`,
  );

describe("timeouts that pause", () => {
  it("hibernates on timeout and resumes on the next exec with its memory", async () => {
    const s = await api.createSandbox({ timeoutMs: 3000, timeoutAction: "pause", autoResume: true });
    await api.post(`/v1/sandboxes/${s.id}/exec`, {
      command:
        'python3 -c \'import secrets,time\nt=secrets.token_hex(8)\nwhile True: open("/tmp/t","w").write(t); time.sleep(0.2)\'',
      background: true,
    });
    const token = await waitFor(async () => {
      const r = await api.exec(s.id, { command: "cat /tmp/t 2>/dev/null || true" });
      return r.stdout.length === 16 ? r.stdout : undefined;
    });
    const paused = await untilStatus(s.id, "paused");
    expect(paused.expiresAt).toBeNull();
    const r = await api.exec(s.id, { command: "cat /tmp/t" });
    expect(r.stdout).toBe(token);
    expect((await statusOf(s.id)).status).toBe("running");
    await api.del(`/v1/sandboxes/${s.id}`);
  });

  it("pauses a persistent sandbox after it was idle, and wakes it", async () => {
    const s = await api.createSandbox({ lifecycle: "persistent", idleTimeoutMs: 2500 });
    expect(s.expiresAt).toBeNull();
    await api.put(`/v1/sandboxes/${s.id}/files?path=/tmp/mark`, "kept in memory");
    const paused = await untilStatus(s.id, "paused");
    expect(paused.status).toBe("paused");
    // Without autoResume, calls on a paused sandbox say so.
    const refused = await api.post<ErrorBody>(`/v1/sandboxes/${s.id}/exec`, { command: "true" });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("paused");
    const woken = await api.post<SandboxBody>(`/v1/sandboxes/${s.id}/wake`);
    expect(woken.body.status).toBe("running");
    expect((await api.exec(s.id, { command: "cat /tmp/mark" })).stdout).toBe("kept in memory");
    await api.del(`/v1/sandboxes/${s.id}`);
  });

  it("rejects an idle timeout on an ephemeral sandbox", async () => {
    const res = await api.post<ErrorBody>("/v1/sandboxes", { idleTimeoutMs: 5000 });
    expect(res.status).toBe(400);
    expect(res.body.error.details!.fields![0]!.field).toBe("idleTimeoutMs");
  });
});
