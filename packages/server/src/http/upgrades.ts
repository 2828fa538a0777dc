import http from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";

type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

const handlersByApp = new WeakMap<
  FastifyInstance,
  { claims: (req: http.IncomingMessage) => boolean; handle: UpgradeHandler }[]
>();

/**
 * Registers a handler for HTTP Upgrade requests (WebSockets) that `claims` accepts. One listener on the
 * server dispatches to the first handler that claims a request; unclaimed upgrades get a 404.
 */
export function onUpgrade(
  app: FastifyInstance,
  claims: (req: http.IncomingMessage) => boolean,
  handle: UpgradeHandler,
): void {
  let handlers = handlersByApp.get(app);
  if (!handlers) {
    const list: { claims: (req: http.IncomingMessage) => boolean; handle: UpgradeHandler }[] = [];
    handlers = list;
    handlersByApp.set(app, list);
    app.server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const handler = list.find((h) => h.claims(req));
      if (handler) handler.handle(req, socket, head);
      else
        rejectUpgrade(socket, new ApiError("not_found", `No route for ${req.method} ${(req.url ?? "").split("?")[0]}`));
    });
  }
  handlers.push({ claims, handle });
}

/** Answers an upgrade request with an API error and closes the socket. */
export function rejectUpgrade(socket: Duplex, e: unknown): void {
  const error = e instanceof ApiError ? e : new ApiError("internal", "internal error");
  const body = JSON.stringify({ error: { code: error.code, message: error.message } });
  socket.end(
    `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? "Error"}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
