import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { SandboxOwner } from "../domain/index.js";
import { ApiError } from "../errors.js";
import { endToEnd } from "../http/hop-by-hop.js";
import { NODE_AUTH_HEADERS } from "./node-auth.js";
import type { NodeClient } from "./node-client.js";

/** The response header naming the node that answered a request. */
export const ANSWERED_BY_HEADER = "x-sandpit-node";

const NODE_HEADERS: readonly string[] = Object.values(NODE_AUTH_HEADERS);

/** A client's proxy credentials are for the node it reached, not for the next one (nor its challenges back). */
const PROXY_AUTH = ["proxy-authorization", "proxy-authenticate"];

/** How many sandboxes' owners are remembered for when the database is unreachable (least recent go first). */
const LAST_KNOWN_OWNERS = 10_000;

/** Seconds a client waits before retrying a request that reached a node its sandbox has just left. */
const RETRY_AFTER_SECONDS = "1";

/** The address of the client of each request another node forwarded here (as that node saw it). */
const forwardedClients = new WeakMap<http.IncomingMessage, string>();

/**
 * The address of the client that sent a request: its peer's, or for a request another node forwarded,
 * the client's as that node saw it (the last X-Forwarded-For entry, which only a verified node adds).
 */
export function clientAddressOf(req: http.IncomingMessage): string {
  return forwardedClients.get(req) ?? req.socket.remoteAddress ?? "";
}

function appendForwardedFor(req: http.IncomingMessage): string {
  const prior = req.headers["x-forwarded-for"];
  const client = clientAddressOf(req);
  return prior ? `${Array.isArray(prior) ? prior.join(", ") : prior}, ${client}` : client;
}

/**
 * Passes requests for a sandbox that lives on another node to that node (its owner), and checks the
 * requests other nodes pass here. A forwarded request is signed with the cluster secret (NodeClient)
 * and goes at most one hop: a node that receives a forwarded request for a sandbox
 * it does not own answers 503 with Retry-After (the sandbox is moving) instead of passing it on. The
 * client's own credentials travel unchanged; the owner checks them as if the client had come to it.
 */
export class NodeForwarder {
  /** The owner each recently asked-for sandbox had, for when the database cannot be asked. */
  private readonly lastKnownOwners = new Map<string, SandboxOwner>();
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

  constructor(
    /** Signs what this node forwards, checks what other nodes forward here. */
    private readonly nodes: NodeClient,
    /** The node a sandbox lives on (one query), or undefined for an unknown sandbox. */
    private readonly ownerOf: (sandboxId: string) => Promise<SandboxOwner | undefined>,
  ) {}

  /** This node's id. */
  get nodeId(): string {
    return this.nodes.self;
  }

  /**
   * Whether another node forwarded this request: true only with a valid signature. Headers that claim a
   * forward without one are refused (401, as on the internal API): they would otherwise pass as a hop that must not go further.
   */
  forwardedByNode(req: http.IncomingMessage): boolean {
    const verdict = this.nodes.verify(req.headers, req.method ?? "GET", req.url ?? "/");
    if (verdict === undefined) return false;
    if (verdict === "forged") {
      throw new ApiError(
        "unauthorized",
        `The request claims to come from a node of the cluster (${NODE_HEADERS.join(", ")}), but its signature ` +
          "does not hold for this method, path and time",
        { header: NODE_AUTH_HEADERS.signature },
      );
    }
    const forwardedFor = String(req.headers["x-forwarded-for"] ?? "").split(",");
    const client = forwardedFor[forwardedFor.length - 1]!.trim();
    if (client) forwardedClients.set(req, client);
    return true;
  }

  /**
   * The node that must answer a request for `sandboxId`, when that is not this one. Undefined: answer
   * here (this node owns the sandbox, the sandbox is unknown and the local route answers 404, or its
   * node is lost and the shared database is all there is). Checks the forwarding headers first.
   */
  async destination(req: http.IncomingMessage, sandboxId: string | undefined): Promise<SandboxOwner | undefined> {
    const forwarded = this.forwardedByNode(req);
    if (sandboxId === undefined) return undefined;
    const owner = await this.lookUpOwner(sandboxId);
    // A node declared lost, or one whose lease ran out (stopped, cut off), is not waited for: its sandboxes
    // are answered here from the database (reads), resumed elsewhere, or refused by the services.
    if (!owner || owner.nodeId === this.nodeId || owner.state === "lost" || !owner.leaseLive) return undefined;
    if (forwarded) {
      throw new ApiError(
        "runtime_unavailable",
        `sandbox ${sandboxId} is not on node ${this.nodeId} (it is on ${owner.nodeId}, perhaps moving); retry shortly`,
        undefined,
        { "retry-after": RETRY_AFTER_SECONDS },
      );
    }
    return owner;
  }

  /**
   * The sandbox's owner from the store. While the database does not answer, the owner it last named:
   * sandboxes keep answering where nothing needs writing (unknown ones are answered here).
   */
  private async lookUpOwner(sandboxId: string): Promise<SandboxOwner | undefined> {
    let owner: SandboxOwner | undefined;
    try {
      owner = await this.ownerOf(sandboxId);
    } catch {
      return this.lastKnownOwners.get(sandboxId);
    }
    this.lastKnownOwners.delete(sandboxId);
    if (owner) {
      this.lastKnownOwners.set(sandboxId, owner);
      if (this.lastKnownOwners.size > LAST_KNOWN_OWNERS) {
        this.lastKnownOwners.delete(this.lastKnownOwners.keys().next().value!);
      }
    }
    return owner;
  }

  private sign(req: http.IncomingMessage): Record<string, string> {
    return this.nodes.sign(req.method ?? "GET", req.url ?? "/");
  }

  private unreachable(owner: SandboxOwner, e: Error): ApiError {
    return new ApiError(
      "runtime_unavailable",
      `node ${owner.nodeId}, where the sandbox lives, does not answer (${e.message}); retry shortly`,
      undefined,
      { "retry-after": RETRY_AFTER_SECONDS },
    );
  }

  /**
   * Passes one HTTP exchange to `owner`, streaming both bodies (backpressure included): resolves once the
   * owner's response has started to flow back, rejects (with the 503 to answer) when the owner cannot be
   * reached before it answered. Either side going away ends the other.
   */
  forwardHttp(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    owner: SandboxOwner,
    requestId: string,
  ): Promise<void> {
    const target = new URL(owner.url);
    const secure = target.protocol === "https:";
    const headers: http.OutgoingHttpHeaders = {
      ...endToEnd(req.headers, [...NODE_HEADERS, ...PROXY_AUTH]),
      "x-forwarded-for": appendForwardedFor(req),
      "x-request-id": requestId,
      ...this.sign(req),
    };
    // `Expect: 100-continue` goes to the owner, which decides: the body leaves only once it asks for it.
    const expectsContinue = String(req.headers.expect ?? "").toLowerCase() === "100-continue";
    return new Promise((resolve, reject) => {
      let bodySent = false;
      const sendBody = () => {
        if (bodySent) return;
        bodySent = true;
        req.pipe(upstream);
      };
      const upstream = (secure ? https : http).request(
        {
          host: target.hostname,
          port: target.port || (secure ? 443 : 80),
          method: req.method,
          path: req.url,
          headers,
          agent: secure ? this.agents.https : this.agents.http,
        },
        (up) => {
          res.removeHeader(ANSWERED_BY_HEADER);
          res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.headers, PROXY_AUTH));
          up.pipe(res);
          // Headers leave with the first chunk of the body when it came with them (one packet), else on
          // their own at once: a stream that is quiet at first must still show that it started.
          setImmediate(() => {
            if (!res.headersSent && !res.destroyed) res.flushHeaders();
          });
          up.on("close", () => {
            if (!up.complete) res.destroy();
          });
          // Answered without asking for the body: the connection still expects it, so it is not reused.
          if (!bodySent) up.on("end", () => upstream.destroy());
          resolve();
        },
      );
      upstream.setNoDelay(true);
      upstream.on("error", (e) => {
        if (res.headersSent) res.destroy();
        else reject(this.unreachable(owner, e));
      });
      upstream.on("continue", sendBody);
      res.on("close", () => {
        if (!res.writableFinished) upstream.destroy();
      });
      if (expectsContinue) upstream.flushHeaders();
      else sendBody();
    });
  }

  /**
   * Tunnels an HTTP Upgrade (a WebSocket) to `owner`: the request line and headers, signed, then bytes
   * both ways. The owner's answer (101, or an error) goes back as it wrote it.
   */
  forwardUpgrade(
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    owner: SandboxOwner,
    reject: (error: ApiError) => void,
  ): void {
    const target = new URL(owner.url);
    const secure = target.protocol === "https:";
    const port = Number(target.port || (secure ? 443 : 80));
    let connected = false;
    const onConnect = () => {
      connected = true;
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i]!;
        const lower = name.toLowerCase();
        if (NODE_HEADERS.includes(lower) || lower === "x-forwarded-for") continue;
        lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
      }
      lines.push(`X-Forwarded-For: ${appendForwardedFor(req)}`);
      for (const [name, value] of Object.entries(this.sign(req))) lines.push(`${name}: ${value}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    };
    const upstream = secure
      ? tls.connect({ host: target.hostname, port, servername: target.hostname }, onConnect)
      : net.connect(port, target.hostname, onConnect);
    upstream.setNoDelay(true);
    const close = () => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.on("error", (e) => {
      if (connected) close();
      else reject(this.unreachable(owner, e));
    });
    upstream.on("close", () => {
      if (connected) close();
    });
    socket.on("error", close);
    socket.on("close", close);
  }
}
