import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "./paths.js";

export interface FakeInternet {
  /** The namespace's addresses, by role. */
  ip: { gateway: string; web: string; allowed: string; denied: string; wild: string; dns: string; metadata: string };
  /** The questions of every query its DNS server received so far, one list per query. */
  dnsQueries(): Promise<string[][]>;
  close(): Promise<void>;
}

const sh = (...args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: "pipe" });

/**
 * A small "internet" in a network namespace the test creates: web servers on several addresses, a UDP
 * echo, a DNS server, and a listener on 169.254.169.254 that would reveal a metadata leak. The host
 * routes 198.18.N.0/24 (a benchmarking range) and 169.254.169.254 into it, so no test packet can leave
 * the machine even if a firewall rule were missing.
 */
export async function startFakeInternet(
  n: number,
  extra: {
    /** HTTPS echo servers on further addresses of the namespace (198.18.N.x). */
    https?: { host: string; port: number; cert: string; key: string }[];
    /** More DNS names. */
    records?: Record<string, string>;
  } = {},
): Promise<FakeInternet> {
  const ns = `spfake${n}`;
  const hostIf = `spfh${n}`;
  const nsIf = `spfn${n}`;
  const net = `198.18.${n}`;
  const ip = {
    gateway: `${net}.1`,
    web: `${net}.2`,
    allowed: `${net}.3`,
    denied: `${net}.4`,
    wild: `${net}.5`,
    dns: `${net}.53`,
    metadata: "169.254.169.254",
  };
  const cleanup = () => {
    try {
      sh("ip", "netns", "delete", ns);
    } catch {}
    try {
      sh("ip", "link", "delete", hostIf);
    } catch {}
  };
  cleanup();
  sh("ip", "netns", "add", ns);
  sh("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns);
  sh("ip", "addr", "add", `${ip.gateway}/24`, "dev", hostIf);
  sh("ip", "link", "set", hostIf, "up");
  sh("ip", "route", "replace", `${ip.metadata}/32`, "dev", hostIf);
  const extraHosts = [...new Set((extra.https ?? []).map((h) => h.host))];
  for (const a of [ip.web, ip.allowed, ip.denied, ip.wild, ip.dns, ...extraHosts]) {
    sh("ip", "-n", ns, "addr", "add", `${a}/24`, "dev", nsIf);
  }
  sh("ip", "-n", ns, "addr", "add", `${ip.metadata}/32`, "dev", nsIf);
  sh("ip", "-n", ns, "link", "set", nsIf, "up");
  sh("ip", "-n", ns, "link", "set", "lo", "up");
  sh("ip", "-n", ns, "route", "add", "default", "via", ip.gateway);

  const config = {
    http: [
      { host: ip.web, port: 80 },
      { host: ip.web, port: 8080 },
      { host: ip.allowed, port: 80 },
      { host: ip.denied, port: 80 },
      { host: ip.wild, port: 80 },
      { host: ip.metadata, port: 80 },
    ],
    udpEcho: { host: ip.web, port: 9999 },
    dns: {
      host: ip.dns,
      records: {
        "allowed.test": ip.allowed,
        "denied.test": ip.denied,
        "api.wild.test": ip.wild,
        "web.test": ip.web,
        ...extra.records,
      },
    },
    https: extra.https ?? [],
  };
  const child: ChildProcess = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      process.execPath,
      "--import",
      "tsx",
      path.join(repoRoot, "tests/helpers/fake-internet-server.ts"),
      JSON.stringify(config),
    ],
    { stdio: ["ignore", "pipe", "inherit"], cwd: repoRoot },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (c: Buffer) => {
      if (c.toString().includes("ready")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`fake internet exited with ${code}`)));
  });
  return {
    ip,
    async dnsQueries() {
      const res = await fetch(`http://${ip.web}/__dns-queries`);
      return (await res.json()) as string[][];
    },
    async close() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
      try {
        sh("ip", "route", "delete", `${ip.metadata}/32`, "dev", hostIf);
      } catch {}
      cleanup();
    },
  };
}
