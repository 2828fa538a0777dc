import net from "node:net";
import { type apiClient, waitFor } from "./api.js";

/** An HTTP + WebSocket echo server on port 8000, written for the sandbox's own Node.js (no packages needed). */
export const portAppSource = `
const http = require("http"), crypto = require("crypto");
const srv = http.createServer((req, res) => {
  if (req.url.startsWith("/stream")) {
    res.writeHead(200, { "content-type": "text/plain" });
    let i = 0;
    const t = setInterval(() => { res.write("tick " + i + "\\n"); if (++i === 3) { clearInterval(t); res.end(); } }, 300);
    return;
  }
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ method: req.method, url: req.url, body, token: req.headers["x-sandpit-traffic-token"] || null }));
  });
});
srv.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n");
  sock.on("data", (buf) => {
    const len = buf[1] & 127, mask = buf.subarray(2, 6);
    const data = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
    sock.write(Buffer.concat([Buffer.from([0x81, data.length + 5]), Buffer.from("echo:"), data]));
  });
});
srv.listen(8000, "0.0.0.0");
`;

/** Starts the port app in a sandbox and waits until it answers. */
export async function startPortApp(api: ReturnType<typeof apiClient>, id: string) {
  await api.put(`/v1/sandboxes/${id}/files?path=/workspace/app.js`, portAppSource);
  await api.post(`/v1/sandboxes/${id}/exec`, { command: "node /workspace/app.js", background: true });
  await waitFor(
    async () => {
      const r = await api.exec(id, {
        command: "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/ || true",
      });
      return r.stdout === "200" ? true : undefined;
    },
    20_000,
    "the app to listen",
  );
}

/** A WebSocket round trip by hand: upgrade, one masked text frame out, one frame back. */
export function websocketEcho(
  serverUrl: string,
  path: string,
  headers: Record<string, string>,
  message: string,
): Promise<string> {
  const { port } = new URL(serverUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), "127.0.0.1", () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
      );
    });
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith("HTTP/1.1 101")) {
          socket.destroy();
          resolve(head.split("\r\n")[0]!);
          return;
        }
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        const payload = Buffer.from(message);
        const mask = Buffer.from([1, 2, 3, 4]);
        socket.write(
          Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4]!)]),
        );
      }
      if (upgraded && buffer.length >= 2 && buffer.length >= 2 + (buffer[1]! & 127)) {
        socket.destroy();
        resolve(buffer.subarray(2, 2 + (buffer[1]! & 127)).toString());
      }
    });
    socket.on("error", reject);
  });
}
