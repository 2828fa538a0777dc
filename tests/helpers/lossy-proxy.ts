import { createServer, request as httpRequest, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

export interface LossyProxy {
  /** http://127.0.0.1:<port>: use as the SDK's apiUrl. */
  url: string;
  /** Requests that reached the server through the proxy, as `"METHOD /path"`, with their Idempotency-Key. */
  forwarded: { route: string; idempotencyKey: string | undefined }[];
  close(): Promise<void>;
}

/**
 * A loopback HTTP proxy in front of a real server that loses responses: a request `lose` picks is sent to
 * the server, which runs it and answers; the proxy reads that whole answer and tells the client 503
 * instead, as a load balancer whose upstream connection broke would. Everything else passes unchanged.
 */
export async function startLossyProxy(
  target: string,
  lose: (method: string, path: string) => boolean,
): Promise<LossyProxy> {
  const upstream = new URL(target);
  const forwarded: LossyProxy["forwarded"] = [];
  const server = createServer((req, res) => {
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const dropAnswer = lose(method, path);
    const key = req.headers["idempotency-key"];
    forwarded.push({ route: `${method} ${path}`, idempotencyKey: typeof key === "string" ? key : undefined });
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, method, path: req.url, headers: req.headers },
      (answer: IncomingMessage) => {
        if (!dropAnswer) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        answer.resume();
        answer.on("end", () => {
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { code: "runtime_unavailable", message: "upstream answer lost" } }));
        });
      },
    );
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
