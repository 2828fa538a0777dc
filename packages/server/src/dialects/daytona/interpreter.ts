import type { CodeContext } from "@sandpit/contract";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import { z } from "zod";
import type { OrgRecord, SandboxRecord } from "../../domain/index.js";
import { ApiError } from "../../errors.js";
import { onUpgrade, rejectUpgrade } from "../../http/upgrades.js";
import type { AppServices } from "../../services/index.js";
import type { DialectContext } from "../dialect.js";
import { resolvePath } from "../opensandbox/execd-session.js";
import { DAYTONA_TOOLBOX_PREFIX } from "./mapping.js";

type WithSandbox<T = object> = FastifyRequest<{ Params: { sandboxId: string } & T }>;

/** Close code with which Daytona's daemon ends a cell that ran past its timeout (the SDK's DaytonaTimeoutError). */
const TIMEOUT_CLOSE_CODE = 4008;
/** A socket on which no cell arrives is closed after this long. */
const FIRST_MESSAGE_TIMEOUT_MS = 60_000;
/** A WebSocket close reason is at most 123 bytes. */
const MAX_CLOSE_REASON_BYTES = 123;

const EXECUTE_SOCKET = new RegExp(`^${DAYTONA_TOOLBOX_PREFIX}/([^/?]+)/process/interpreter/execute(?:\\?|$)`);

/** The one message a client sends on the execute socket. */
const executeMessageSchema = z.object({
  code: z
    .string()
    .min(1)
    .max(16 * 1024 * 1024),
  contextId: z.string().min(1).max(256).optional(),
  envs: z.record(z.string(), z.string()).optional(),
  /** Seconds; 0 or absent: Sandpit's default cell timeout. */
  timeout: z.number().min(0).optional(),
});

const createContextSchema = z.object({
  cwd: z.string().min(1).max(4096).optional(),
  language: z.literal("python", { message: "Daytona's code interpreter runs python only" }).optional(),
});

export type DaytonaInterpreterServices = Pick<AppServices, "auth" | "sandboxes" | "code">;

/** Daytona's `InterpreterContext` of a Sandpit python context. */
function interpreterContextOf(c: CodeContext) {
  return { id: c.id, language: c.language, cwd: c.cwd, createdAt: c.createdAt, active: true };
}

/**
 * Daytona's code interpreter (`sandbox.codeInterpreter`): Python contexts that keep their state from one
 * cell to the next, on Sandpit's code contexts (so they need a template with Python's kernel, such as
 * `code-interpreter`; elsewhere a cell fails with Sandpit's `language_unavailable`). The contexts' REST
 * calls are toolbox routes; a cell runs over a WebSocket as the daemon's: the client sends
 * `{code, contextId?, envs?, timeout?}`, the server sends `stdout`, `stderr` and `error` chunks, then a
 * `control` chunk `completed` (or `interrupted`) and closes normally. A cell past its timeout is interrupted
 * (its context keeps its state) and the socket closes with 4008; a cell that cannot start closes with
 * 4000 + the HTTP status of its error and the error's message. Daytona's interpreter reports what a cell
 * prints, not the value of its last expression, so Sandpit's results are not sent.
 */
export function registerInterpreterRoutes(
  app: FastifyInstance,
  services: DaytonaInterpreterServices,
  {
    open,
    parse,
    routeOptions,
  }: {
    open(request: WithSandbox): Promise<{ org: OrgRecord; record: SandboxRecord }>;
    parse: DialectContext["parse"];
    routeOptions: object;
  },
) {
  const { code } = services;

  app.post("/:sandboxId/process/interpreter/context", routeOptions, async (request: WithSandbox) => {
    const body = parse(createContextSchema, request.body ?? {});
    const { org, record } = await open(request);
    const context = await code.createContext(org, record.id, {
      language: "python",
      ...(body.cwd ? { cwd: resolvePath(record, body.cwd) } : {}),
    });
    return interpreterContextOf(context);
  });

  app.get("/:sandboxId/process/interpreter/context", routeOptions, async (request: WithSandbox) => {
    const { org, record } = await open(request);
    const contexts = await code.listContexts(org, record.id);
    // Daytona lists the contexts its user made: not the default one, nor the bash contexts of sessions.
    return { contexts: contexts.filter((c) => c.language === "python" && !c.isDefault).map(interpreterContextOf) };
  });

  app.delete(
    "/:sandboxId/process/interpreter/context/:contextId",
    routeOptions,
    async (request: WithSandbox<{ contextId: string }>, reply) => {
      const { org, record } = await open(request);
      await code.deleteContext(org, record.id, request.params.contextId);
      return reply.code(204).send();
    },
  );
}

/** The execute WebSocket, registered on the root app (upgrades are dispatched there, not per prefix). */
export function registerInterpreterSocket(app: FastifyInstance, services: DaytonaInterpreterServices) {
  const sockets = new WebSocketServer({ noServer: true, maxPayload: 17 * 1024 * 1024 });
  onUpgrade(app, {
    claims: (req) => EXECUTE_SOCKET.test(req.url ?? ""),
    sandboxOf: (req) => EXECUTE_SOCKET.exec(req.url ?? "")?.[1],
    handle: (req, socket, head) => {
      const sandboxId = EXECUTE_SOCKET.exec(req.url ?? "")?.[1] ?? "";
      const header = req.headers.authorization;
      const key = header?.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : undefined;
      services.auth
        .authenticate(key)
        .then(async (org) => {
          // An unknown or deleted sandbox is a plain 404 before the upgrade, not a socket that closes.
          const record = await services.sandboxes.get(org, sandboxId);
          if (record.status === "destroyed") throw new ApiError("sandbox_not_found", `sandbox ${sandboxId} not found`);
          sockets.handleUpgrade(req, socket, head, (ws) => {
            const idle = setTimeout(() => ws.close(4408, "no cell was sent"), FIRST_MESSAGE_TIMEOUT_MS);
            ws.once("close", () => clearTimeout(idle));
            ws.once("message", (data) => {
              clearTimeout(idle);
              runCell(services, org, record.id, ws, data).catch((e: unknown) => closeWithError(ws, e));
            });
          });
        })
        .catch((e: unknown) => rejectUpgrade(socket, e));
    },
  });
}

async function runCell(
  services: DaytonaInterpreterServices,
  org: OrgRecord,
  sandboxId: string,
  ws: WebSocket,
  data: RawData,
): Promise<void> {
  let message: z.output<typeof executeMessageSchema>;
  try {
    message = executeMessageSchema.parse(JSON.parse(String(data)));
  } catch {
    throw new ApiError("bad_request", "the first message must be JSON {code, contextId?, envs?, timeout?}");
  }
  const stop = new AbortController();
  ws.once("close", () => stop.abort());
  const cell = await services.code.run(
    org,
    sandboxId,
    {
      code: message.code,
      ...(message.contextId ? { contextId: message.contextId } : { language: "python" }),
      ...(message.envs ? { env: message.envs } : {}),
      ...(message.timeout ? { timeoutMs: Math.max(1, Math.round(message.timeout * 1000)) } : {}),
    },
    stop.signal,
  );
  const send = (chunk: object) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(chunk));
  };
  for await (const event of cell.events) {
    if (event.type === "stdout" || event.type === "stderr") send({ type: event.type, text: event.text });
    else if (event.type === "error" && event.name !== "TimeoutError") {
      send({ type: "error", name: event.name, value: event.value, traceback: event.traceback });
    } else if (event.type === "end") {
      if (event.status === "timeout") {
        ws.close(TIMEOUT_CLOSE_CODE, "execution timed out");
        return;
      }
      send({ type: "control", text: event.status === "interrupted" ? "interrupted" : "completed" });
      ws.close(1000);
      return;
    }
  }
}

function closeWithError(ws: WebSocket, e: unknown): void {
  const error = e instanceof ApiError ? e : new ApiError("internal", "internal error");
  const bytes = Buffer.from(error.message);
  // Cut on bytes; a character cut in two becomes U+FFFD (3 bytes), hence the margin.
  const reason =
    bytes.length <= MAX_CLOSE_REASON_BYTES ? error.message : `${bytes.subarray(0, MAX_CLOSE_REASON_BYTES - 6)}…`;
  if (ws.readyState === ws.OPEN) ws.close(error.status >= 500 ? 1011 : 4000 + error.status, reason);
}
