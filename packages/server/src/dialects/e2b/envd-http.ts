import type http from "node:http";
import { pipeline } from "node:stream/promises";
import zlib from "node:zlib";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ApiError } from "../../errors.js";
import { parsePortHeader, type TrafficRouter, underPrefix } from "../../http/traffic-router.js";
import { receiveMultipart, uploadBody, writeUpload } from "../../http/upload-limit.js";
import type { ExecService } from "../../services/exec-service.js";
import type { FileService } from "../../services/file-service.js";
import type { SandboxService } from "../../services/sandbox-service.js";
import { sendError, sendJson } from "./envd-replies.js";
import { EnvdRpc } from "./envd-rpc.js";
import { basicUser, type EnvdSession, EnvdSessions } from "./envd-session.js";
import { ENVD_PORT } from "./mapping.js";

/** Where E2B clients reach envd when `E2B_SANDBOX_URL` points at Sandpit: `<sandpit>/e2b/envd`. */
export const ENVD_PATH_PREFIX = "/e2b/envd";
/** The headers that name the sandbox and its port under `E2B_SANDBOX_URL` (lower case, as Node has them). */
export const SANDBOX_ID_HEADER = "e2b-sandbox-id";
export const SANDBOX_PORT_HEADER = "e2b-sandbox-port";

/**
 * E2B's in-sandbox daemon ("envd") for every Sandpit sandbox: `/health`, `/files` (download; upload as
 * multipart or octet-stream, gzip either way) and the Connect services, reached with the
 * `E2b-Sandbox-Id` header under `/e2b/envd`, or by the host name `49983-<id>.<SANDPIT_DOMAIN>`.
 */
export function registerEnvd(
  traffic: TrafficRouter,
  deps: { sandboxes: SandboxService; files: FileService; exec: ExecService; maxUploadBytes: number },
) {
  const { maxUploadBytes } = deps;
  const sessions = new EnvdSessions(deps.sandboxes, deps.files);
  const rpc = new EnvdRpc(sessions, deps.exec);
  const connect = connectNodeAdapter({
    routes: (router) => rpc.register(router),
    // A path that is neither REST nor a Connect method gets an error body like every other answer
    // (the server speaks HTTP/1.1 only, so the response is Node's http one).
    fallback: (req, res) =>
      sendError(
        res as http.ServerResponse,
        new ApiError("not_found", `envd has no ${req.method} ${(req.url ?? "/").split("?")[0]}`),
      ),
  });

  const open = (req: http.IncomingMessage, sandboxId: string | undefined, url: URL): Promise<EnvdSession> =>
    sessions.open(
      sandboxId,
      (req.headers["x-access-token"] as string | undefined) ?? url.searchParams.get("access_token") ?? undefined,
      url.searchParams.get("username") ?? basicUser(req.headers.authorization),
    );

  async function files(req: http.IncomingMessage, res: http.ServerResponse, sandboxId: string | undefined, url: URL) {
    const session = await open(req, sandboxId, url);
    const owner = { uid: session.account.uid, gid: session.account.gid };
    const queryPath = url.searchParams.get("path") ?? "";
    if (req.method === "GET") {
      if (!queryPath) throw new ApiError("bad_request", "path is required");
      const file = await session.files.read(session.resolve(queryPath));
      const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        ...(gzip ? { "content-encoding": "gzip" } : { "content-length": file.size }),
      });
      if (gzip) await pipeline(file.body, zlib.createGzip(), res);
      else await pipeline(file.body, res);
      return;
    }
    if (req.method !== "POST") throw new ApiError("method_not_allowed", `${req.method} /files`);
    const written: { name: string; type: "file"; path: string }[] = [];
    const record = (target: string) =>
      written.push({ name: target.split("/").pop() ?? target, type: "file", path: target });
    const type = String(req.headers["content-type"] ?? "");
    if (type.startsWith("multipart/form-data")) {
      // preservePath: the SDK names each part with its full destination path.
      await receiveMultipart(
        req,
        maxUploadBytes,
        {
          file: (_field, stream, info) => {
            const target = session.resolve(info.filename && info.filename !== "blob" ? info.filename : queryPath);
            if (!target || target === "/") throw new ApiError("bad_request", "every file needs a path");
            return session.files.write(target, stream, { mkdirs: true, owner }).then(() => void record(target));
          },
        },
        { preservePath: true },
      );
    } else {
      if (!queryPath) throw new ApiError("bad_request", "path is required for an octet-stream upload");
      const target = session.resolve(queryPath);
      const { body, size } = uploadBody(req, maxUploadBytes);
      await writeUpload(body, (b) =>
        session.files.write(target, b, { mkdirs: true, owner, ...(size !== undefined ? { size } : {}) }),
      );
      record(target);
    }
    if (written.length === 0) throw new ApiError("bad_request", "no file in the request");
    sendJson(res, 200, written);
  }

  /** Handles one envd request for a sandbox; `path` is the part after the prefix. */
  async function handle(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    sandboxId: string | undefined,
    path: string,
  ) {
    const url = new URL(path, "http://envd");
    try {
      if (url.pathname === "/health") {
        res.writeHead(204).end();
        return;
      }
      if (url.pathname === "/files") {
        await files(req, res, sandboxId, url);
        return;
      }
      // Connect RPC: the adapter reads the sandbox id and token from the headers.
      if (sandboxId && !req.headers[SANDBOX_ID_HEADER]) req.headers[SANDBOX_ID_HEADER] = sandboxId;
      req.url = path;
      connect(req, res);
    } catch (e) {
      sendError(res, e);
    }
  }

  const sandboxIdHeader = (req: http.IncomingMessage) => {
    const header = req.headers[SANDBOX_ID_HEADER];
    return typeof header === "string" ? header : undefined;
  };
  // Before routing: envd requests are streamed, any method, unparsed body. A request under the prefix
  // that names a port (E2b-Sandbox-Port) goes to that port's handler, envd's own included (below).
  traffic.onPath(
    (url) => underPrefix(url, ENVD_PATH_PREFIX) !== undefined,
    sandboxIdHeader,
    async (request, reply) => {
      const raw = request.raw;
      reply.hijack();
      reply.raw.setHeader("x-request-id", request.id);
      // A port header with a sandbox id would have been routed to that port; what is left is a mistake.
      const portHeader = raw.headers[SANDBOX_PORT_HEADER];
      if (portHeader !== undefined) {
        const port = parsePortHeader(portHeader);
        if (port === undefined) {
          sendError(reply.raw, new ApiError("bad_request", "E2b-Sandbox-Port must be a port number (1-65535)"));
          return;
        }
        if (port !== ENVD_PORT) {
          sendError(reply.raw, new ApiError("bad_request", `missing E2b-Sandbox-Id (for port ${port})`));
          return;
        }
      }
      await handle(raw, reply.raw, sandboxIdHeader(raw), underPrefix(raw.url ?? "/", ENVD_PATH_PREFIX) ?? "/");
    },
  );
  traffic.onPort(ENVD_PORT, async (request, reply, target) => {
    reply.hijack();
    reply.raw.setHeader("x-request-id", request.id);
    await handle(request.raw, reply.raw, target.sandboxId, target.path);
  });
}
