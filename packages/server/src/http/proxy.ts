import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { clientAddressOf } from "../cluster/node-forwarder.js";
import { ApiError } from "../errors.js";
import { type PortTarget, TRAFFIC_TOKEN_HEADER } from "../services/port-service.js";
import { endToEnd } from "./hop-by-hop.js";

const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function forwardHeaders(req: http.IncomingMessage): http.OutgoingHttpHeaders {
  const headers = endToEnd(req.headers, [TRAFFIC_TOKEN_HEADER]);
  headers["x-forwarded-for"] = clientAddressOf(req);
  headers["x-forwarded-host"] = req.headers.host ?? "";
  return headers;
}

function sendError(res: http.ServerResponse, e: unknown) {
  const error = e instanceof ApiError ? e : new ApiError("upstream_unavailable", `upstream failed: ${String(e)}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(error.status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: error.code, message: error.message } }));
}

/** Methods without a body that a proxy may send again: nothing ran if the connection was dead. */
const RESENDABLE = new Set(["GET", "HEAD", "OPTIONS"]);

/** Streams one HTTP exchange to the sandbox's port and back (bodies are never buffered). */
export function proxyHttp(req: http.IncomingMessage, res: http.ServerResponse, target: PortTarget, path: string) {
  const send = (retried: boolean) => {
    const upstream = http.request(
      {
        host: target.host,
        port: target.port,
        method: req.method,
        path,
        headers: forwardHeaders(req),
        agent: upstreamAgent,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, endToEnd(up.headers, [TRAFFIC_TOKEN_HEADER]));
        res.flushHeaders();
        up.pipe(res);
      },
    );
    upstream.setNoDelay(true);
    upstream.on("error", (e: NodeJS.ErrnoException) => {
      // A kept-alive connection the sandbox's server closed as it was being reused (e.g. websockify's web
      // server between noVNC's files): send a bodyless request once more on a fresh connection.
      const deadConnection = e.code === "ECONNRESET" || e.code === "EPIPE";
      if (!retried && upstream.reusedSocket && deadConnection && RESENDABLE.has(req.method ?? "") && !res.headersSent) {
        send(true);
        return;
      }
      sendError(res, new ApiError("upstream_unavailable", `nothing answers on port ${target.port}: ${e.message}`));
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (retried) upstream.end();
    else req.pipe(upstream);
  };
  send(false);
}

/** Tunnels a WebSocket (or any Upgrade) to the sandbox's port. */
export function proxyUpgrade(
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: PortTarget,
  path: string,
) {
  const upstream = net.connect(target.port, target.host, () => {
    const lines = [`${req.method} ${path} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (name.toLowerCase() === TRAFFIC_TOKEN_HEADER) continue;
      lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.setNoDelay(true);
  const close = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on("error", close);
  socket.on("error", close);
  upstream.on("close", close);
  socket.on("close", close);
}
