// Every path that takes a request body into a sandbox or a volume keeps to SANDPIT_MAX_UPLOAD_BYTES,
// counted on the decoded bytes: a body over it gets a 413 in that API's shape (never a hang, also
// with `Expect: 100-continue`), a body at it is written, and a gzip bomb leaves nothing behind.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { type apiClient, type SandboxBody, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

const LIMIT = 1024 * 1024;
let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer(
  (s, a) => {
    server = s;
    api = a;
  },
  { SANDPIT_MAX_UPLOAD_BYTES: String(LIMIT) },
);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** Whether the server said `100 Continue` before answering. */
  continued: boolean;
}

/** How long an answer may take before the request counts as hung (a generous deadline, not a measure). */
const HANG_DEADLINE_MS = 60_000;

/**
 * Sends a body over a raw HTTP request: with its length (or chunked), and with `Expect: 100-continue`
 * the body goes only once the server says so. Resolves with the answer; rejects if none comes.
 */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  opts: { expectContinue?: boolean; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const url = new URL(server.url);
    const all: http.OutgoingHttpHeaders = { ...headers };
    if (!opts.chunked) all["content-length"] = body.length;
    if (opts.expectContinue) all.expect = "100-continue";
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers: all });
    let continued = false;
    let answered = false;
    const deadline = setTimeout(() => {
      req.destroy();
      reject(new Error(`${method} ${path}: no answer within ${HANG_DEADLINE_MS} ms (continued: ${continued})`));
    }, HANG_DEADLINE_MS);
    req.on("continue", () => {
      continued = true;
      req.end(body);
    });
    req.on("response", (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        clearTimeout(deadline);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString(),
          continued,
        });
        req.destroy();
      });
    });
    // The server may close the connection after its answer while the body is still going out.
    req.on("error", (e) => {
      if (answered) return;
      clearTimeout(deadline);
      reject(e);
    });
    if (!opts.expectContinue) req.end(body);
  });
}

function multipart(parts: { name: string; filename?: string; type?: string; data: Buffer }[]) {
  const boundary = `----sandpit-${randomBytes(8).toString("hex")}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const filename = p.filename === undefined ? "" : `; filename="${p.filename}"`;
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${filename}\r\n` +
          `Content-Type: ${p.type ?? "application/octet-stream"}\r\n\r\n`,
      ),
      p.data,
      Buffer.from("\r\n"),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

/** A gzip-compressed tar of files of the given sizes, made by tar(1). */
function tarGz(files: { name: string; size: number }[]): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), "sandpit-limits-"));
  try {
    for (const f of files) writeFileSync(path.join(dir, f.name), Buffer.alloc(f.size, 0x61));
    return execFileSync("tar", ["-cz", "-C", dir, ...files.map((f) => f.name)], { maxBuffer: 64 * LIMIT });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A few KB of gzip that decode to far more than the limit. */
const bomb = zlib.gzipSync(Buffer.alloc(64 * LIMIT));
const atLimit = () => randomBytes(LIMIT);
const overLimit = () => randomBytes(LIMIT + 1);

async function shell(sandbox: SandboxBody, command: string): Promise<string> {
  return (await api.exec(sandbox.id, { command })).stdout;
}

/** The names in a sandbox directory (temporary upload files included) once the agent has cleaned up. */
async function settledListing(sandbox: SandboxBody, dir: string, expected: string): Promise<string> {
  return waitFor(
    async () => {
      const names = (await shell(sandbox, `ls -A ${dir} 2>/dev/null | tr '\\n' ' '`)).trim();
      return names === expected ? names : undefined;
    },
    30_000,
    `${dir} to hold only "${expected}"`,
  );
}

describe("upload limits", () => {
  let sandbox: SandboxBody;
  const bearer = () => ({ authorization: `Bearer ${server.apiKey}` });

  it("native PUT /files: at the limit written; over it 413 before 100 Continue, chunked and gzip-bombed too", async () => {
    sandbox = await api.createSandbox();
    const url = (p: string) => `/v1/sandboxes/${sandbox.id}/files?path=${encodeURIComponent(p)}`;
    const octet = { ...bearer(), "content-type": "application/octet-stream" };

    const ok = await send("PUT", url("/up/native/at-limit"), octet, atLimit(), { expectContinue: true });
    expect(ok.status).toBe(201);
    expect(ok.continued).toBe(true);
    expect(JSON.parse(ok.text).size).toBe(LIMIT);

    const declared = await send("PUT", url("/up/native/over"), octet, overLimit(), { expectContinue: true });
    expect(declared.status).toBe(413);
    expect(declared.continued).toBe(false);
    expect(JSON.parse(declared.text).error.code).toBe("payload_too_large");

    const chunked = await send("PUT", url("/up/native/over"), octet, overLimit(), {
      chunked: true,
      expectContinue: true,
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.text).error).toMatchObject({ code: "payload_too_large", details: { limit: LIMIT } });

    const bombed = await send("PUT", url("/up/native/bomb"), { ...octet, "content-encoding": "gzip" }, bomb);
    expect(bombed.status).toBe(413);
    expect(JSON.parse(bombed.text).error.code).toBe("payload_too_large");

    // Decoded bytes are what counts and what is written.
    const packed = await send(
      "PUT",
      url("/up/native/gzipped"),
      { ...octet, "content-encoding": "gzip" },
      zlib.gzipSync(Buffer.alloc(LIMIT, 0x62)),
    );
    expect(packed.status).toBe(201);
    expect(JSON.parse(packed.text).size).toBe(LIMIT);
    expect(await settledListing(sandbox, "/up/native", "at-limit gzipped")).toBe("at-limit gzipped");

    const unknown = await send("PUT", url("/up/native/x"), { ...octet, "content-encoding": "zstd" }, bomb);
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.text).error.message).toMatch(/content-encoding: zstd/);
  });

  it("a client that sends the whole body before reading gets its 413, and the connection serves the next request", async () => {
    const target = `/v1/sandboxes/${sandbox.id}/files?path=${encodeURIComponent("/up/native/eager")}`;
    const body = randomBytes(8 * LIMIT);
    // Two requests on one connection, the second behind the refused body: the server must read that body
    // to its end (a client like fetch writes it all before it reads) and then answer the next request.
    const raw = await new Promise<string>((resolve, reject) => {
      const url = new URL(server.url);
      const socket = net.connect(Number(url.port), url.hostname);
      const received: Buffer[] = [];
      socket.on("data", (c: Buffer) => received.push(c));
      socket.on("end", () => resolve(Buffer.concat(received).toString("latin1")));
      socket.on("error", reject);
      socket.write(
        `PUT ${target} HTTP/1.1\r\nHost: sandpit\r\nAuthorization: Bearer ${server.apiKey}\r\n` +
          `Content-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      socket.write(
        `GET /v1/sandboxes/${sandbox.id} HTTP/1.1\r\nHost: sandpit\r\nAuthorization: Bearer ${server.apiKey}\r\n` +
          "Connection: close\r\n\r\n",
      );
    });
    const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses, raw.slice(0, 600)).toEqual([413, 200]);
    expect(raw).toContain(`"id":"${sandbox.id}"`);
  });

  it("E2B envd POST /files, octet-stream and multipart: 413 as {code, message}, gzip bombs leave nothing", async () => {
    const info = await fetch(`${server.url}/e2b/sandboxes/${sandbox.id}`, {
      headers: { "x-api-key": server.apiKey },
    }).then((r) => r.json() as Promise<{ envdAccessToken: string }>);
    const envd = { "e2b-sandbox-id": sandbox.id, "x-access-token": info.envdAccessToken, "content-type": "" };
    const octet = { ...envd, "content-type": "application/octet-stream" };
    const url = (p: string) => `/e2b/envd/files?path=${encodeURIComponent(p)}&username=root`;

    expect((await send("POST", url("/up/envd/at-limit"), octet, atLimit(), { expectContinue: true })).status).toBe(200);
    const over = await send("POST", url("/up/envd/over"), octet, overLimit(), { expectContinue: true });
    expect(over.status).toBe(413);
    expect(over.continued).toBe(false);
    expect(JSON.parse(over.text)).toMatchObject({ code: 413, message: expect.stringMatching(/limit/) });
    const bombed = await send("POST", url("/up/envd/bomb"), { ...octet, "content-encoding": "gzip" }, bomb);
    expect(bombed.status).toBe(413);
    expect(JSON.parse(bombed.text).code).toBe(413);

    const form = (data: Buffer) => multipart([{ name: "file", filename: "/up/envd-mp/file", data }]);
    const okForm = form(atLimit());
    const ok = await send("POST", url("/up/envd-mp/file"), { ...envd, "content-type": okForm.type }, okForm.body, {
      expectContinue: true,
    });
    expect(ok.status).toBe(200);
    const overForm = form(overLimit());
    const overMp = await send(
      "POST",
      url("/up/envd-mp/over"),
      { ...envd, "content-type": overForm.type },
      overForm.body,
      { expectContinue: true },
    );
    expect(overMp.status).toBe(413);
    expect(JSON.parse(overMp.text).code).toBe(413);
    const bombForm = multipart([{ name: "file", filename: "/up/envd-mp/bomb", data: Buffer.alloc(64 * LIMIT) }]);
    const bombedMp = await send(
      "POST",
      url("/up/envd-mp/bomb"),
      { ...envd, "content-type": bombForm.type, "content-encoding": "gzip" },
      zlib.gzipSync(bombForm.body),
    );
    expect(bombedMp.status).toBe(413);
    expect(await settledListing(sandbox, "/up/envd", "at-limit")).toBe("at-limit");
    expect(await settledListing(sandbox, "/up/envd-mp", "file")).toBe("file");
  });

  it("OpenSandbox execd multipart upload: just over the limit with 100-continue gets its 413, no hang", async () => {
    const url = `/opensandbox/execd/${sandbox.id}/files/upload`;
    const form = (path: string, data: Buffer) =>
      multipart([
        {
          name: "metadata",
          filename: "metadata",
          type: "application/json",
          data: Buffer.from(JSON.stringify({ path })),
        },
        { name: "file", filename: "file", data },
      ]);
    const headers = (type: string) => ({ "open-sandbox-api-key": server.apiKey, "content-type": type });

    const ok = form("/up/execd/at-limit", atLimit());
    expect((await send("POST", url, headers(ok.type), ok.body, { expectContinue: true })).status).toBe(200);
    const over = form("/up/execd/over", overLimit());
    const refused = await send("POST", url, headers(over.type), over.body, { expectContinue: true });
    expect(refused.status).toBe(413);
    expect(JSON.parse(refused.text)).toMatchObject({ code: "INVALID_FILE", message: expect.stringMatching(/limit/) });
    // Two files, each under the limit, together over it: one limit per upload.
    const halves = multipart([
      { name: "metadata", filename: "metadata", data: Buffer.from(JSON.stringify({ path: "/up/execd/a" })) },
      { name: "file", filename: "a", data: randomBytes(LIMIT / 2 + 1) },
      { name: "metadata", filename: "metadata", data: Buffer.from(JSON.stringify({ path: "/up/execd/b" })) },
      { name: "file", filename: "b", data: randomBytes(LIMIT / 2 + 1) },
    ]);
    expect((await send("POST", url, headers(halves.type), halves.body)).status).toBe(413);
    const bombForm = form("/up/execd/bomb", Buffer.alloc(64 * LIMIT));
    const bombed = await send(
      "POST",
      url,
      { ...headers(bombForm.type), "content-encoding": "gzip" },
      zlib.gzipSync(bombForm.body),
    );
    expect(bombed.status).toBe(413);
    expect(await settledListing(sandbox, "/up/execd", "a at-limit")).toBe("a at-limit");
  });

  it("Vercel fs/write: the archive's extracted bytes count, 413 in Vercel's shape", async () => {
    const url = `/vercel/v1/sandboxes/${sandbox.id}/fs/write`;
    const headers = { ...bearer(), "content-type": "application/gzip", "x-cwd": "/up/vercel" };
    expect((await send("POST", url, headers, tarGz([{ name: "at-limit", size: LIMIT }]))).status).toBe(200);
    const over = await send("POST", url, headers, tarGz([{ name: "over", size: LIMIT + 1 }]), {
      expectContinue: true,
    });
    expect(over.status).toBe(413);
    expect(JSON.parse(over.text).error).toMatchObject({ code: "payload_too_large" });
    const spread = tarGz([
      { name: "a", size: LIMIT / 2 },
      { name: "b", size: LIMIT / 2 + 1 },
    ]);
    expect(spread.length).toBeLessThan(LIMIT / 8);
    expect((await send("POST", url, headers, spread)).status).toBe(413);
    // b never became a file; a (whole, under the limit) may stay as written.
    const left = await settledListing(sandbox, "/up/vercel", "a at-limit");
    expect(left).toBe("a at-limit");
  });

  it("ZWRM upload: over the limit refused in ZWRM's shape (400 invalid_request), at it written", async () => {
    const url = (p: string) => `/zwrm/v1/sandboxes/${sandbox.id}/upload?path=${encodeURIComponent(p)}`;
    const octet = { ...bearer(), "content-type": "application/octet-stream" };
    expect((await send("POST", url("/up/zwrm/at-limit"), octet, atLimit())).status).toBe(204);
    const over = await send("POST", url("/up/zwrm/over"), octet, overLimit(), { chunked: true, expectContinue: true });
    expect(over.status).toBe(400);
    expect(JSON.parse(over.text)).toMatchObject({ code: "invalid_request" });
    const bombed = await send("POST", url("/up/zwrm/bomb"), { ...octet, "content-encoding": "gzip" }, bomb);
    expect(bombed.status).toBe(400);
    expect(await settledListing(sandbox, "/up/zwrm", "at-limit")).toBe("at-limit");
  });

  it("E2B volume content PUT: 413 as {code, message}; a gzip bomb leaves no file in the volume", async () => {
    const created = await fetch(`${server.url}/e2b/volumes`, {
      method: "POST",
      headers: { "x-api-key": server.apiKey, "content-type": "application/json" },
      body: JSON.stringify({ name: "limits" }),
    }).then((r) => r.json() as Promise<{ volumeID: string; token: string }>);
    const base = `/e2b/volumecontent/${created.volumeID}`;
    const auth = { authorization: `Bearer ${created.token}` };
    const octet = { ...auth, "content-type": "application/octet-stream" };
    const file = (p: string) => `${base}/file?path=${encodeURIComponent(p)}`;

    const ok = await send("PUT", file("/at-limit"), octet, atLimit(), { expectContinue: true });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.text).size).toBe(LIMIT);
    const over = await send("PUT", file("/over"), octet, overLimit(), { expectContinue: true });
    expect(over.status).toBe(413);
    expect(over.continued).toBe(false);
    expect(JSON.parse(over.text)).toMatchObject({ code: 413 });
    const bombed = await send("PUT", file("/bomb"), { ...octet, "content-encoding": "gzip" }, bomb);
    expect(bombed.status).toBe(413);
    // A replaced file stays as it was when its new content is refused midway.
    const replaced = await send("PUT", file("/at-limit"), { ...octet, "content-encoding": "gzip" }, bomb);
    expect(replaced.status).toBe(413);
    const listing = await fetch(`${server.url}${base}/dir?path=/`, { headers: auth }).then(
      (r) => r.json() as Promise<{ name: string; size: number }[]>,
    );
    expect(listing.map((e) => [e.name, e.size])).toEqual([["at-limit", LIMIT]]);
  });
});
