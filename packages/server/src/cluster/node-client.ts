import { claimsNodeOrigin, signNodeRequest, verifyNodeRequest } from "./node-auth.js";

/** Where another node is reached. */
export interface NodeAddress {
  id: string;
  url: string;
}

/** A JSON answer of another node. */
export interface NodeResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

/**
 * Requests between the nodes of a cluster, signed with the cluster's secret (node-auth.ts): internal calls
 * this node makes, and the check of calls other nodes make to it.
 */
export class NodeClient {
  constructor(
    /** This node's id: the sender of what it signs. */
    readonly self: string,
    private readonly secret: string,
  ) {}

  /** Headers that prove this node sends `method path` (for forwarded requests and internal calls). */
  sign(method: string, pathAndQuery: string): Record<string, string> {
    return signNodeRequest(this.secret, this.self, method, pathAndQuery);
  }

  /**
   * The node a request comes from when its signature holds; undefined when it claims no node origin;
   * "forged" when it claims one that does not verify (refuse it).
   */
  verify(
    headers: Record<string, string | string[] | undefined>,
    method: string,
    pathAndQuery: string,
  ): { from: string } | "forged" | undefined {
    if (!claimsNodeOrigin(headers)) return undefined;
    return verifyNodeRequest(this.secret, headers, method, pathAndQuery) ?? "forged";
  }

  /** A JSON call to another node's internal API. */
  async call<T>(
    node: NodeAddress,
    method: string,
    pathAndQuery: string,
    body?: unknown,
    opts: { timeoutMs?: number } = {},
  ): Promise<NodeResponse<T>> {
    const headers: Record<string, string> = { ...this.sign(method, pathAndQuery) };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(new URL(pathAndQuery, node.url), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
    });
    const text = await res.text();
    const parsed =
      (res.headers.get("content-type") ?? "").includes("application/json") && text ? JSON.parse(text) : text;
    return { status: res.status, headers: res.headers, body: parsed as T };
  }
}
