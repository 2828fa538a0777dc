import { AgentClient, type AgentEndpoint } from "../agent/agent-client.js";
import type { SandboxRecord } from "../domain/index.js";
import type { SandboxRuntime } from "../runtime/runtime.js";

/**
 * One agent client per running sandbox, kept between calls so that its keep-alive connections are reused.
 * A sandbox's client is dropped when it stops (pause, destroy, death) and replaced when it starts again.
 */
export class AgentPool {
  private readonly agents = new Map<string, AgentClient>();

  constructor(private readonly runtime: Pick<SandboxRuntime, "agentEndpoint">) {}

  /** The client of a running sandbox, made from its record the first time it is asked for. */
  for(record: SandboxRecord): AgentClient {
    let agent = this.agents.get(record.id);
    if (!agent) {
      agent = new AgentClient(
        this.runtime.agentEndpoint({ netIndex: record.netIndex!, agentToken: record.agentToken }),
      );
      this.agents.set(record.id, agent);
    }
    return agent;
  }

  /** The client for the endpoint a start or resume just returned. */
  connect(id: string, endpoint: AgentEndpoint): AgentClient {
    const agent = new AgentClient(endpoint);
    this.agents.set(id, agent);
    return agent;
  }

  /** Closes a sandbox's client (its connections go nowhere once the sandbox stops). */
  forget(id: string) {
    this.agents.get(id)?.close();
    this.agents.delete(id);
  }

  close() {
    for (const id of [...this.agents.keys()]) this.forget(id);
  }
}
