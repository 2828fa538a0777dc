import type { TestServer } from "./server.js";

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** A thin fetch wrapper for tests of the raw HTTP API. */
export function apiClient(server: Pick<TestServer, "url" | "apiKey">, key: string | null = server.apiKey) {
  async function call<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> {
    const init: RequestInit = { method, headers: { ...headers } };
    if (key) (init.headers as Record<string, string>).authorization = `Bearer ${key}`;
    if (body instanceof Uint8Array || typeof body === "string") {
      init.body = body;
      (init.headers as Record<string, string>)["content-type"] ??= "application/octet-stream";
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)["content-type"] = "application/json";
    }
    const res = await fetch(`${server.url}${path}`, init);
    const type = res.headers.get("content-type") ?? "";
    const raw = Buffer.from(await res.arrayBuffer());
    const parsed = type.includes("application/json") ? JSON.parse(raw.toString()) : raw;
    return { status: res.status, headers: res.headers, body: parsed as T };
  }
  return {
    call,
    get: <T = Record<string, unknown>>(path: string) => call<T>("GET", path),
    post: <T = Record<string, unknown>>(path: string, body?: unknown, headers?: Record<string, string>) =>
      call<T>("POST", path, body ?? {}, headers),
    put: <T = Record<string, unknown>>(path: string, body: Uint8Array | string) => call<T>("PUT", path, body),
    del: <T = Record<string, unknown>>(path: string) => call<T>("DELETE", path),
    /** Creates a sandbox and fails loudly when that did not work. */
    async createSandbox(body: Record<string, unknown> = {}): Promise<SandboxBody> {
      const res = await call<SandboxBody>("POST", "/v1/sandboxes", body);
      if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    async exec(id: string, body: Record<string, unknown>): Promise<ExecBody> {
      const res = await call<ExecBody>("POST", `/v1/sandboxes/${id}/exec`, body);
      if (res.status !== 200) throw new Error(`exec failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
  };
}

export interface SandboxBody {
  id: string;
  status: string;
  reason: string | null;
  node: string;
  template: string;
  user: string | null;
  mainCommandId: string | null;
  resources: { vcpus: number; memoryMb: number; diskMb: number };
  envKeys: string[];
  metadata: Record<string, string>;
  cwd: string;
  networkPolicy: Record<string, unknown>;
  ports: number[];
  publicPorts: boolean;
  trafficToken: string;
  createdAt: string;
  startedAt: string | null;
  expiresAt: string | null;
  destroyedAt: string | null;
}

export interface ExecBody {
  commandId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
  truncated: boolean;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: { fields?: { field: string; rule: string; message: string }[] } };
}

export async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
