import {
  createTerminalRequestSchema,
  listTerminalsResponseSchema,
  terminalInputSchema,
  terminalSchema,
  terminalSizeSchema,
} from "@sandpit/contract";
import type { FastifyInstance } from "fastify";
import { WebSocketServer } from "ws";
import { onUpgrade, rejectUpgrade } from "../http/upgrades.js";
import type { AuthService } from "../services/auth-service.js";
import type { TerminalService } from "../services/terminal-service.js";
import { type Authenticate, route } from "./route.js";

const TERMINAL_SOCKET = /^\/v1\/sandboxes\/([^/?]+)\/terminals\/([^/?]+)(?:\?|$)/;

export function terminalRoutes(
  app: FastifyInstance,
  authenticate: Authenticate,
  auth: AuthService,
  terminals: TerminalService,
) {
  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/terminals",
      sandboxParam: "id",
      summary:
        "Start a program (default: a login shell) on a new terminal; connect to it with a WebSocket at " +
        "/v1/sandboxes/{id}/terminals/{terminalId}",
      tags: ["terminals"],
      body: createTerminalRequestSchema,
      responses: { 201: { description: "Terminal", schema: terminalSchema } },
    },
    async ({ org, params, body, reply }) => {
      reply.code(201);
      return terminals.create(org, params.id!, body);
    },
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/terminals",
      sandboxParam: "id",
      summary: "List the sandbox's terminals",
      tags: ["terminals"],
      responses: { 200: { description: "Terminals", schema: listTerminalsResponseSchema } },
    },
    async ({ org, params }) => ({ terminals: await terminals.list(org, params.id!) }),
  );

  route(
    app,
    authenticate,
    {
      method: "GET",
      url: "/v1/sandboxes/{id}/terminals/{terminalId}",
      sandboxParam: "id",
      summary:
        "A terminal. As a WebSocket (Upgrade; key in Authorization or ?access_token=): binary messages are " +
        'raw input and output; text messages {"type":"input","data"} and {"type":"resize","cols","rows"} from ' +
        'the client, {"type":"exit","exitCode"} from the server. A reconnecting client gets the output it missed',
      tags: ["terminals"],
      responses: { 200: { description: "Terminal", schema: terminalSchema } },
    },
    async ({ org, params }) => terminals.get(org, params.id!, params.terminalId!),
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/terminals/{terminalId}/input",
      sandboxParam: "id",
      summary: "Send input to the terminal, as typed (text, or bytes as base64)",
      tags: ["terminals"],
      body: terminalInputSchema,
      responses: { 204: { description: "Sent" } },
    },
    async ({ org, params, body, reply }) => {
      const bytes = body.data !== undefined ? Buffer.from(body.data) : Buffer.from(body.dataBase64!, "base64");
      await terminals.input(org, params.id!, params.terminalId!, bytes);
      reply.code(204);
      return undefined;
    },
  );

  route(
    app,
    authenticate,
    {
      method: "POST",
      url: "/v1/sandboxes/{id}/terminals/{terminalId}/resize",
      sandboxParam: "id",
      summary: "Resize the terminal (the program gets SIGWINCH)",
      tags: ["terminals"],
      body: terminalSizeSchema,
      responses: { 200: { description: "Terminal", schema: terminalSchema } },
    },
    async ({ org, params, body }) => terminals.resize(org, params.id!, params.terminalId!, body.cols, body.rows),
  );

  route(
    app,
    authenticate,
    {
      method: "DELETE",
      url: "/v1/sandboxes/{id}/terminals/{terminalId}",
      sandboxParam: "id",
      summary: "End the terminal's program",
      tags: ["terminals"],
      responses: { 204: { description: "Ended" } },
    },
    async ({ org, params, reply }) => {
      await terminals.kill(org, params.id!, params.terminalId!);
      reply.code(204);
      return undefined;
    },
  );

  const sockets = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  onUpgrade(app, {
    claims: (req) => TERMINAL_SOCKET.test(req.url ?? ""),
    sandboxOf: (req) => TERMINAL_SOCKET.exec(req.url ?? "")?.[1],
    handle: (req, socket, head) => {
      const [, sandboxId, terminalId] = (req.url ?? "").match(TERMINAL_SOCKET) ?? [];
      const header = req.headers.authorization;
      const key = header?.startsWith("Bearer ")
        ? header.slice("Bearer ".length).trim()
        : (new URL(req.url ?? "/", "http://x").searchParams.get("access_token") ?? undefined);
      auth
        .authenticate(key)
        .then(async (org) => {
          // Refuse before upgrading: an unknown terminal is a plain 404, not a socket that closes.
          await terminals.get(org, sandboxId!, terminalId!);
          sockets.handleUpgrade(req, socket, head, (ws) => {
            terminals.attach(org, sandboxId!, terminalId!, ws).catch(() => ws.close(1011, "attach failed"));
          });
        })
        .catch((e: unknown) => rejectUpgrade(socket, e));
    },
  });
}
