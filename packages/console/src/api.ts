import type {
  ClusterNode,
  CodeEvent,
  CodeLanguage,
  CreateSandboxRequest,
  DesktopStream,
  ErrorBody,
  EventType,
  FileEntry,
  MetricsSample,
  Sandbox,
  SandboxMetrics,
  SandboxStatus,
  SandpitEvent,
  Template,
  Terminal,
} from "@sandpit/contract";
import { ndjsonValues } from "./code-output";

export type {
  ClusterNode,
  CodeEvent,
  CodeLanguage,
  DesktopStream,
  EventType,
  FileEntry,
  MetricsSample,
  Sandbox,
  SandboxMetrics,
  SandboxStatus,
  SandpitEvent,
  Template,
  Terminal,
};

/** Thrown when the API answers with an error status; carries the API's `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The answer of an optional endpoint: its data, or why it is not there (the server answered 404). */
export type Optional<T> = { available: true; data: T } | { available: false; reason: string };

export interface SandboxFilter {
  /** Empty: every sandbox that is not destroyed. */
  statuses: SandboxStatus[];
  /** Exact metadata matches, sent to the server as `metadata.KEY=VALUE`. */
  metadata: Record<string, string>;
}

/** A key of this browser tab: kept in sessionStorage, so it is gone when the tab closes. */
function tabKey(storageKey: string) {
  return {
    key: (): string | null => sessionStorage.getItem(storageKey),
    save: (key: string) => sessionStorage.setItem(storageKey, key),
    clear: () => sessionStorage.removeItem(storageKey),
  };
}

/** The organisation's API key the console signed in with. */
export const session = tabKey("sandpit.console.apiKey");

/** The server's admin key (SANDPIT_ADMIN_KEY), asked for by the Nodes view only. */
export const adminSession = tabKey("sandpit.console.adminKey");

/**
 * The `/v1` API as the console uses it, with the key as `Authorization: Bearer`. Every call goes to the
 * origin that served the console.
 */
export class ConsoleApi {
  constructor(
    readonly key: string,
    /** Called when the server refuses the key (401), so the console can ask for it again. */
    private readonly onUnauthorized: () => void = () => undefined,
  ) {}

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${this.key}`);
    let res: Response;
    try {
      res = await fetch(`/v1${path}`, { ...init, headers });
    } catch (e) {
      throw new ApiError(0, "network_error", `the server did not answer: ${e instanceof Error ? e.message : e}`);
    }
    if (res.ok) return res;
    const text = await res.text();
    let code = "http_error";
    let message = `HTTP ${res.status}`;
    try {
      const body = JSON.parse(text) as ErrorBody;
      code = body.error.code;
      message = body.error.message;
    } catch {
      if (text) message = `HTTP ${res.status}: ${text.slice(0, 200)}`;
    }
    if (res.status === 401) this.onUnauthorized();
    throw new ApiError(res.status, code, message);
  }

  async json<T>(path: string, init: RequestInit = {}, body?: unknown): Promise<T> {
    const headers = new Headers(init.headers);
    if (body !== undefined) headers.set("content-type", "application/json");
    const res = await this.request(path, {
      ...init,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return res.status === 204 ? (undefined as T) : ((await res.json()) as T);
  }

  /** A call to an endpoint the server may not have yet: a 404 is "not available", not a failure. */
  private async optional<T>(path: string): Promise<Optional<T>> {
    try {
      return { available: true, data: await this.json<T>(path) };
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return { available: false, reason: e.message };
      throw e;
    }
  }

  async listSandboxes(filter: SandboxFilter): Promise<Sandbox[]> {
    const query = new URLSearchParams({ limit: "1000" });
    if (filter.statuses.length) query.set("status", filter.statuses.join(","));
    if (filter.statuses.includes("destroyed")) query.set("includeDestroyed", "true");
    for (const [k, v] of Object.entries(filter.metadata)) query.set(`metadata.${k}`, v);
    return (await this.json<{ sandboxes: Sandbox[] }>(`/sandboxes?${query}`)).sandboxes;
  }

  getSandbox(id: string): Promise<Sandbox> {
    return this.json<Sandbox>(`/sandboxes/${id}`);
  }

  createSandbox(request: CreateSandboxRequest): Promise<Sandbox> {
    return this.json<Sandbox>("/sandboxes", { method: "POST" }, request);
  }

  pause(id: string): Promise<Sandbox> {
    return this.json<Sandbox>(`/sandboxes/${id}/pause`, { method: "POST" }, {});
  }

  resume(id: string): Promise<Sandbox> {
    return this.json<Sandbox>(`/sandboxes/${id}/resume`, { method: "POST" }, {});
  }

  async destroy(id: string): Promise<void> {
    await this.request(`/sandboxes/${id}`, { method: "DELETE" });
  }

  async listTemplates(): Promise<Template[]> {
    return (await this.json<{ templates: Template[] }>("/templates")).templates;
  }

  metrics(id: string): Promise<Optional<SandboxMetrics>> {
    return this.optional<SandboxMetrics>(`/sandboxes/${id}/metrics`);
  }

  /** The newest events (the API answers newest first). */
  async events(filter: { sandboxId?: string; types?: EventType[]; limit?: number }): Promise<Optional<SandpitEvent[]>> {
    const query = new URLSearchParams({ limit: String(filter.limit ?? 200) });
    if (filter.sandboxId) query.set("sandboxId", filter.sandboxId);
    if (filter.types?.length) query.set("type", filter.types.join(","));
    const answer = await this.optional<{ events: SandpitEvent[] }>(`/events?${query}`);
    return answer.available ? { available: true, data: answer.data.events } : answer;
  }

  async listFiles(id: string, path: string): Promise<FileEntry[]> {
    const query = new URLSearchParams({ path });
    return (await this.json<{ entries: FileEntry[] }>(`/sandboxes/${id}/files/list?${query}`)).entries;
  }

  async readFile(id: string, path: string): Promise<Blob> {
    return (await this.request(`/sandboxes/${id}/files?${new URLSearchParams({ path })}`)).blob();
  }

  async writeFile(id: string, path: string, content: Blob): Promise<void> {
    await this.request(`/sandboxes/${id}/files?${new URLSearchParams({ path })}`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: content,
    });
  }

  async removeFile(id: string, path: string, recursive: boolean): Promise<void> {
    const query = new URLSearchParams({ path, recursive: String(recursive) });
    await this.request(`/sandboxes/${id}/files?${query}`, { method: "DELETE" });
  }

  async mkdir(id: string, path: string): Promise<void> {
    await this.json(`/sandboxes/${id}/files/mkdir`, { method: "POST" }, { path, parents: true });
  }

  /** The sandbox's live view, or null when none runs. */
  async desktopStream(id: string): Promise<DesktopStream | null> {
    const answer = await this.optional<DesktopStream>(`/sandboxes/${id}/desktop/stream`);
    return answer.available ? answer.data : null;
  }

  startDesktopStream(id: string, viewOnly: boolean): Promise<DesktopStream> {
    return this.json<DesktopStream>(`/sandboxes/${id}/desktop/stream`, { method: "POST" }, { viewOnly });
  }

  async stopDesktopStream(id: string): Promise<void> {
    await this.request(`/sandboxes/${id}/desktop/stream`, { method: "DELETE" });
  }

  async listTerminals(id: string): Promise<Terminal[]> {
    return (await this.json<{ terminals: Terminal[] }>(`/sandboxes/${id}/terminals`)).terminals;
  }

  createTerminal(id: string, size: { cols: number; rows: number }): Promise<Terminal> {
    return this.json<Terminal>(`/sandboxes/${id}/terminals`, { method: "POST" }, size);
  }

  async killTerminal(id: string, terminalId: string): Promise<void> {
    await this.request(`/sandboxes/${id}/terminals/${terminalId}`, { method: "DELETE" });
  }

  /**
   * Runs a cell in the language's default context, handing its events to `onEvent` as they arrive; resolves
   * after `end`. Aborting `signal` interrupts the cell (the context keeps its state).
   */
  async runCode(
    id: string,
    cell: { code: string; language: CodeLanguage },
    onEvent: (event: CodeEvent) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const res = await this.request(`/sandboxes/${id}/code/run`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/x-ndjson" },
      body: JSON.stringify(cell),
      ...(signal ? { signal } : {}),
    });
    if (!res.body) throw new ApiError(0, "invalid_response", "the server answered without a body");
    for await (const value of ndjsonValues(res.body)) {
      const event = value as CodeEvent | { type: "error"; code: string; message: string };
      // The stream's own failure (not an error the cell raised) has the API's code and message.
      if (event.type === "error" && "code" in event) throw new ApiError(0, event.code, event.message);
      onEvent(event);
      if (event.type === "end") return;
    }
    throw new ApiError(0, "network_error", "the cell's stream ended before the cell did");
  }

  /** The cluster's nodes; needs a ConsoleApi made with the admin key. */
  async listNodes(): Promise<ClusterNode[]> {
    return (await this.json<{ nodes: ClusterNode[] }>("/nodes")).nodes;
  }

  /** Drain stops placing new sandboxes on the node; undrain lets it take them again (admin key). */
  setNodeDraining(id: string, draining: boolean): Promise<ClusterNode> {
    return this.json<ClusterNode>(`/nodes/${encodeURIComponent(id)}/${draining ? "drain" : "undrain"}`, {
      method: "POST",
    });
  }

  /**
   * The terminal's WebSocket URL. Browsers cannot set headers on a WebSocket, so the key travels as
   * `access_token`, which the server accepts on terminal sockets (and leaves out of its request log).
   */
  terminalSocketUrl(id: string, terminalId: string): string {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ access_token: this.key });
    return `${scheme}://${location.host}/v1/sandboxes/${id}/terminals/${terminalId}?${query}`;
  }
}
