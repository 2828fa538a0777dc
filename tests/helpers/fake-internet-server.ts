// Runs inside the fake-internet network namespace: HTTP servers, a UDP echo and a DNS server on the
// namespace's own addresses. Configuration comes as one JSON argument.
import dgram from "node:dgram";
import http from "node:http";
import https from "node:https";
import dnsPacket from "dns-packet";

interface Config {
  http: { host: string; port: number }[];
  https?: { host: string; port: number; cert: string; key: string }[];
  udpEcho: { host: string; port: number };
  dns: { host: string; records: Record<string, string> };
}

const config = JSON.parse(process.argv[2] ?? "{}") as Config;
let pending = config.http.length + (config.https?.length ?? 0) + 2;
const ready = () => {
  if (--pending === 0) process.stdout.write("ready\n");
};

/** The questions of every query the DNS server received, one list per query, in order. */
const dnsQueries: string[][] = [];

for (const { host, port } of config.http) {
  http
    .createServer((req, res) => {
      if (req.url === "/__dns-queries") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(dnsQueries));
        return;
      }
      const body = JSON.stringify({
        server: `${host}:${port}`,
        from: req.socket.remoteAddress,
        path: req.url,
        headers: req.headers,
      });
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    })
    .listen(port, host, ready);
}

// HTTPS echo servers (method, path, headers and the request body as text); GET /__requests answers how
// many other requests each has seen. /drop-when-reused on a connection that already served a request is
// dropped unanswered, as a server does with a kept-alive connection it has just closed.
for (const { host, port, cert, key } of config.https ?? []) {
  let seen = 0;
  const served = new WeakMap<object, number>();
  https
    .createServer({ cert, key }, (req, res) => {
      if (req.url === "/__requests") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ seen }));
        return;
      }
      const before = served.get(req.socket) ?? 0;
      if (req.url === "/drop-when-reused" && before > 0) {
        req.socket.destroy();
        return;
      }
      served.set(req.socket, before + 1);
      seen++;
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        const echo = { server: `${host}:${port}`, method: req.method, path: req.url, headers: req.headers, body };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(echo));
      });
    })
    .listen(port, host, ready);
}

const echo = dgram.createSocket("udp4");
echo.on("message", (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
echo.bind(config.udpEcho.port, config.udpEcho.host, ready);

const dns = dgram.createSocket("udp4");
dns.on("message", (msg, rinfo) => {
  const query = dnsPacket.decode(msg);
  dnsQueries.push((query.questions ?? []).map((x) => x.name));
  const q = query.questions?.[0];
  const ip = q && q.type === "A" ? config.dns.records[q.name.toLowerCase()] : undefined;
  const known = q ? q.name.toLowerCase() in config.dns.records : false;
  const answer = dnsPacket.encode({
    id: query.id ?? 0,
    type: "response",
    // dns-packet ignores `rcode`: the rcode goes in the low four bits of the flags (3 = NXDOMAIN).
    flags: dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3),
    questions: query.questions ?? [],
    answers: ip && q ? [{ type: "A", name: q.name, ttl: 60, class: "IN", data: ip }] : [],
  } as dnsPacket.Packet);
  dns.send(answer, rinfo.port, rinfo.address);
});
dns.bind(53, config.dns.host, ready);
