import http from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";

type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

/** A kind of HTTP Upgrade request (a WebSocket endpoint) and who handles it. */
export interface UpgradeRoute {
  claims(req: http.IncomingMessage): boolean;
  /** The sandbox a claimed request is for: the node it lives on answers it. */
  sandboxOf(req: http.IncomingMessage): string | undefined;
  handle: UpgradeHandler;
}

/**
 * Passes an upgrade for a sandbox on another node to that node: resolves true when it did (the socket is
 * then its), false when this node answers; rejects with the error to answer with.
 */
export type UpgradeForwarding = (
  req: http.IncomingMessage,
  sandboxId: string | undefined,
  socket: Duplex,
  head: Buffer,
) => Promise<boolean>;

interface AppUpgrades {
  routes: UpgradeRoute[];
  forwarding?: UpgradeForwarding;
}

const upgradesByApp = new WeakMap<FastifyInstance, AppUpgrades>();

function upgradesOf(app: FastifyInstance): AppUpgrades {
  let upgrades = upgradesByApp.get(app);
  if (!upgrades) {
    const registered: AppUpgrades = { routes: [] };
    upgrades = registered;
    upgradesByApp.set(app, registered);
    app.server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      // Node takes its own error listener off an upgraded socket: without one, a client that resets the
      // connection (after a refusal, or mid-handshake) would raise an uncaught ECONNRESET and end the process.
      socket.on("error", () => socket.destroy());
      const route = registered.routes.find((r) => r.claims(req));
      if (!route) {
        rejectUpgrade(socket, new ApiError("not_found", `No route for ${req.method} ${(req.url ?? "").split("?")[0]}`));
        return;
      }
      if (!registered.forwarding) {
        route.handle(req, socket, head);
        return;
      }
      registered.forwarding(req, route.sandboxOf(req), socket, head).then(
        (forwarded) => {
          if (!forwarded) route.handle(req, socket, head);
        },
        (e: unknown) => rejectUpgrade(socket, e),
      );
    });
  }
  return upgrades;
}

/**
 * Registers a handler for HTTP Upgrade requests (WebSockets) that `claims` accepts. One listener on the
 * server dispatches to the first route that claims a request; unclaimed upgrades get a 404.
 */
export function onUpgrade(app: FastifyInstance, route: UpgradeRoute): void {
  upgradesOf(app).routes.push(route);
}

/** Sends every claimed upgrade through `forwarding` first (the node its sandbox lives on answers it). */
export function forwardUpgrades(app: FastifyInstance, forwarding: UpgradeForwarding): void {
  upgradesOf(app).forwarding = forwarding;
}

/** Answers an upgrade request with an API error (and its headers, e.g. Retry-After) and closes the socket. */
export function rejectUpgrade(socket: Duplex, e: unknown): void {
  const error = e instanceof ApiError ? e : new ApiError("internal", "internal error");
  const body = JSON.stringify({ error: { code: error.code, message: error.message } });
  const extra = Object.entries(error.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(
    `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? "Error"}\r\nContent-Type: application/json\r\n` +
      `${extra.join("")}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
