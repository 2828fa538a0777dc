import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

export interface WebhookReceiver {
  /** Request n is answered with `statuses[n]` (the last one for the rest); may be replaced while it runs. */
  statuses: number[];
  received: ReceivedWebhook[];
  /** http://127.0.0.1:<port>/hook */
  url: string;
  close(): Promise<void>;
}

/** A webhook receiver on loopback (servers reach it with SANDPIT_OUTBOUND_ALLOWED_HOSTS=127.0.0.1). */
export async function startWebhookReceiver(initial: number[] = [200]): Promise<WebhookReceiver> {
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const { statuses, received } = receiver;
      const answered = statuses[Math.min(received.length, statuses.length - 1)]!;
      received.push({ headers: req.headers, body, answered });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const receiver: WebhookReceiver = {
    statuses: initial,
    received: [],
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  return receiver;
}
