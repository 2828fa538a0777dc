import { execFileSync, spawn } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface LoopbackHttp {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Directory served under /files/. */
  filesDir: string;
  /** Directory holding bare repositories served under /git/<name>.git (git smart HTTP). */
  gitDir: string;
  close(): Promise<void>;
}

/**
 * An HTTP server on loopback for sources: static files under /files/ and git repositories under /git/
 * through `git http-backend` (the real smart-HTTP protocol, so shallow clones and fetches by commit work).
 */
export async function startLoopbackHttp(): Promise<LoopbackHttp> {
  const root = mkdtempSync("/var/tmp/sandpit-loopback-http-");
  const filesDir = path.join(root, "files");
  const gitDir = path.join(root, "git");
  mkdirSync(filesDir);
  mkdirSync(gitDir);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname.startsWith("/files/")) {
      const file = path.join(filesDir, path.normalize(url.pathname.slice("/files/".length)));
      if (!file.startsWith(filesDir) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end("not found");
        return;
      }
      res.writeHead(200, { "content-length": statSync(file).size });
      createReadStream(file).pipe(res);
      return;
    }
    if (url.pathname.startsWith("/redirect/")) {
      res.writeHead(302, { location: url.pathname.slice("/redirect".length) }).end();
      return;
    }
    if (!url.pathname.startsWith("/git/")) {
      res.writeHead(404).end();
      return;
    }
    const cgi = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: gitDir,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname.slice("/git".length),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
        REMOTE_ADDR: "127.0.0.1",
        HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"] ?? ""),
      },
      stdio: ["pipe", "pipe", "ignore"],
    });
    req.pipe(cgi.stdin);
    // CGI output: headers, a blank line, then the body.
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString().split("\r\n")) {
        const [name, ...rest] = line.split(":");
        const value = rest.join(":").trim();
        if (!name) continue;
        if (name.toLowerCase() === "status") status = Number(value.split(" ")[0]);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.on("close", () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    filesDir,
    gitDir,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "Test",
  GIT_AUTHOR_EMAIL: "test@example.invalid",
  GIT_COMMITTER_NAME: "Test",
  GIT_COMMITTER_EMAIL: "test@example.invalid",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

/**
 * Makes a bare repository `<name>.git` in the server's git directory with one commit per entry of
 * `commits` (file name → content) on `main`, and returns the commit ids in order.
 */
export function makeGitRepo(http: LoopbackHttp, name: string, commits: Record<string, string>[]): string[] {
  const work = mkdtempSync("/var/tmp/sandpit-git-work-");
  const git = (...args: string[]) => execFileSync("git", args, { cwd: work, env: gitEnv }).toString().trim();
  git("init", "-q", "-b", "main");
  const ids: string[] = [];
  for (const [i, files] of commits.entries()) {
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
      writeFileSync(path.join(work, file), content);
    }
    git("add", "-A");
    git("commit", "-q", "-m", `commit ${i + 1}`);
    ids.push(git("rev-parse", "HEAD"));
  }
  const bare = path.join(http.gitDir, `${name}.git`);
  execFileSync("git", ["clone", "-q", "--bare", work, bare], { env: gitEnv });
  execFileSync("git", ["-C", bare, "config", "http.receivepack", "false"], { env: gitEnv });
  rmSync(work, { recursive: true, force: true });
  return ids;
}

/** Adds a tag or branch to a repository made by makeGitRepo. */
export function gitRef(http: LoopbackHttp, name: string, kind: "tag" | "branch", ref: string, commit: string) {
  const bare = path.join(http.gitDir, `${name}.git`);
  execFileSync("git", ["-C", bare, kind === "tag" ? "tag" : "branch", ref, commit], { env: gitEnv });
}
