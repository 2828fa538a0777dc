import type { NetworkPolicy } from "@sandpit/contract";
import type { AgentEndpoint } from "../agent/agent-client.js";
import type { FallbackExecResult } from "../runtime/runsc.js";
import type {
  EgressTarget,
  RuntimeStatus,
  SandboxDeathReason,
  SandboxLaunchSpec,
  SandboxRuntime,
  SandboxStats,
} from "../runtime/runtime.js";

/**
 * A runtime without sandboxes, for tests of the HTTP layer that need no root and no gVisor: validation,
 * authentication, error shapes, the OpenAPI document. Starting a sandbox fails (there is no agent to
 * talk to); everything that asks about sandboxes finds none. Real sandboxes are the integration
 * tests' job, never this fake's.
 */
export class FakeRuntime implements SandboxRuntime {
  /** Launch specs in the order they were asked for. */
  readonly started: SandboxLaunchSpec[] = [];

  async start(spec: SandboxLaunchSpec): Promise<AgentEndpoint> {
    this.started.push(spec);
    throw new Error("the fake runtime starts no sandboxes");
  }
  async pause(): Promise<void> {}
  async resume(): Promise<AgentEndpoint> {
    throw new Error("the fake runtime has no sandboxes to resume");
  }
  async copySnapshot(): Promise<number> {
    return 0;
  }
  async startFromSnapshot(): Promise<AgentEndpoint> {
    throw new Error("the fake runtime starts no sandboxes");
  }
  async captureLayer(): Promise<void> {}
  async missingLayers(): Promise<string[] | undefined> {
    return undefined;
  }
  async discardImage(): Promise<void> {}
  async hasCheckpoint(): Promise<boolean> {
    return false;
  }
  async applyNetworkPolicy(_target: EgressTarget, _policy: NetworkPolicy): Promise<void> {}
  portAddress(_spec: Pick<SandboxLaunchSpec, "netIndex">, port: number): { host: string; port: number } {
    return { host: "127.0.0.1", port };
  }
  agentEndpoint(spec: Pick<SandboxLaunchSpec, "netIndex" | "agentToken">): AgentEndpoint {
    return { host: "127.0.0.1", port: 1, token: spec.agentToken };
  }
  async status(): Promise<RuntimeStatus> {
    return { state: "missing" };
  }
  async alive(): Promise<boolean> {
    return false;
  }
  async deathReason(): Promise<SandboxDeathReason> {
    return "crashed";
  }
  async destroy(): Promise<void> {}
  async listIds(): Promise<string[]> {
    return [];
  }
  async listNetSlots(): Promise<number[]> {
    return [];
  }
  async releaseNetSlot(): Promise<void> {}
  async execFallback(): Promise<FallbackExecResult> {
    return { exitCode: 127, stdout: "", stderr: "the fake runtime runs no commands", timedOut: false, durationMs: 0 };
  }
  async stats(): Promise<SandboxStats | undefined> {
    return undefined;
  }
}
