import type { SandboxRecord } from "../domain/index.js";

/**
 * A running sandbox record for unit tests of the dialects' mappings: 1 vCPU, 1024 MB, created
 * 2024-01-01T00:00:00Z, started a second later, expiring five minutes after that.
 */
export function sandboxRecord(overrides: Partial<SandboxRecord> = {}): SandboxRecord {
  return {
    id: "sbx_aaaaaaaaaaaaaaaaaaaa",
    orgId: "org",
    nodeId: "local",
    status: "running",
    reason: null,
    template: "base",
    vcpus: 1,
    memoryMb: 1024,
    diskMb: 4096,
    env: {},
    metadata: {},
    cwd: "/workspace",
    timeoutMs: 300_000,
    networkPolicy: { mode: "allow-all" },
    timeoutAction: "destroy",
    lifecycle: "ephemeral",
    idleTimeoutMs: null,
    autoResume: false,
    hibernate: true,
    ports: [],
    allPorts: false,
    publicPorts: false,
    trafficToken: "tok",
    netIndex: 1,
    agentToken: "agent",
    user: null,
    mainCommandId: null,
    createdAt: Date.UTC(2024, 0, 1),
    startedAt: Date.UTC(2024, 0, 1, 0, 0, 1),
    expiresAt: Date.UTC(2024, 0, 1, 0, 5, 1),
    destroyedAt: null,
    ...overrides,
  } as SandboxRecord;
}
