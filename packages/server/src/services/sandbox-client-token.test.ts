import { randomBytes } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import { describe, expect, it } from "vitest";
import { sandboxRecord } from "../dialects/sandbox-record.fixture.js";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { AgentPool } from "./agent-pool.js";
import type { SandboxDeaths } from "./sandbox-deaths.js";
import type { SandboxOrigins } from "./sandbox-origin.js";
import { SandboxService } from "./sandbox-service.js";
import type { VolumeService } from "./volume-service.js";

/** A SandboxService over a store that knows `records`; nothing else is used by the client-token methods. */
function service(records: SandboxRecord[], key = randomBytes(32)) {
  const store = { getSandbox: async (id: string) => records.find((r) => r.id === id) } as Pick<Store, "getSandbox">;
  return new SandboxService(
    {
      store: store as Store,
      runtime: {} as SandboxRuntime,
      origins: {} as SandboxOrigins,
      volumes: {} as VolumeService,
      agents: {} as AgentPool,
      deaths: {} as SandboxDeaths,
      log: {} as FastifyBaseLogger,
      startMainProcess: async () => "",
    },
    {
      maxPorts: 0,
      defaultQuota: { maxSandboxes: 1, maxVcpus: 1, maxMemoryMb: 1 },
      snapshotDir: (id) => id,
      overcommit: { cpu: 1, memory: 1, disk: 1 },
    },
    key,
  );
}

describe("sandbox-scoped client tokens", () => {
  const a = sandboxRecord({ id: "sbx_aaaaaaaaaaaaaaaaaaaa", orgId: "org_a", agentToken: "shared" });
  const b = sandboxRecord({ id: "sbx_bbbbbbbbbbbbbbbbbbbb", orgId: "org_a", agentToken: "shared" });

  it("opens only the sandbox and the service it was made for", async () => {
    const sandboxes = service([a, b]);
    const token = sandboxes.clientToken(a.id, "e2b-envd");
    expect(await sandboxes.byClientToken(a.id, "e2b-envd", token)).toMatchObject({
      org: { id: "org_a" },
      record: { id: a.id },
    });
    // b shares a's agent token (as a fork does): a's token still does not open it
    expect(await sandboxes.byClientToken(b.id, "e2b-envd", token)).toBeUndefined();
    expect(await sandboxes.byClientToken(a.id, "opensandbox-execd", token)).toBeUndefined();
    expect(await sandboxes.byClientToken(a.id, "e2b-envd", undefined)).toBeUndefined();
    expect(await sandboxes.byClientToken(a.id, "e2b-envd", `${token}x`)).toBeUndefined();
  });

  it("depends on the server's key, not on anything the sandbox holds", () => {
    const one = service([a]).clientToken(a.id, "e2b-envd");
    const other = service([a]).clientToken(a.id, "e2b-envd");
    expect(one).not.toBe(other);
    const key = randomBytes(32);
    expect(service([a], key).clientToken(a.id, "e2b-envd")).toBe(service([a], key).clientToken(a.id, "e2b-envd"));
    expect(one).not.toContain(a.agentToken);
  });

  it("answers an unknown sandbox like a wrong token", async () => {
    const sandboxes = service([]);
    expect(await sandboxes.byClientToken(a.id, "e2b-envd", sandboxes.clientToken(a.id, "e2b-envd"))).toBeUndefined();
  });
});
