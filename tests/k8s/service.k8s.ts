// Sandboxes through the Kubernetes Service in front of the Sandpit node DaemonSet, with the real CLI and
// SDK: create, exec, files both ways, delete. Runs only under tests/k8s/run.sh (`npm run test:k8s`), which
// stands up the cluster, deploys deploy/kubernetes/with-postgres and passes its address in the environment.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Sandbox } from "sandpit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/k8s/run.sh (npm run test:k8s)`);
  return value;
}

const serviceUrl = required("SANDPIT_K8S_URL");
const apiKey = required("SANDPIT_K8S_API_KEY");
const kubectl = required("SANDPIT_K8S_KUBECTL");
const nodeName = required("SANDPIT_K8S_NODE");
const databaseUrl = required("SANDPIT_K8S_DATABASE_URL");
const connection = { apiUrl: serviceUrl, apiKey };
const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const result: Run = { code: null, stdout: "", stderr: "" };
    child.stdout.on("data", (chunk: Buffer) => {
      result.stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      result.stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      result.code = code;
      resolve(result);
    });
  });
}

/** The CLI as a user runs it, pointed at the Service; fails with its stderr unless it exits 0. */
async function sandpit(...args: string[]): Promise<string> {
  const result = await run(process.execPath, [cliEntry, ...args], { SANDPIT_URL: serviceUrl, SANDPIT_API_KEY: apiKey });
  if (result.code !== 0) throw new Error(`sandpit ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

async function kubectlOut(...args: string[]): Promise<string> {
  const result = await run(kubectl, args);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** Marks this run's sandboxes, so that listing them ignores what earlier runs on the same database left. */
const runLabel = `k8s-run=${randomUUID()}`;
let workDir: string;
const created: string[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "sandpit-k8s-"));
});

afterAll(async () => {
  for (const id of created) await Sandbox.kill(id, connection).catch(() => undefined);
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe("Sandpit on Kubernetes, through the Service", () => {
  it("runs one node pod per labelled node, privileged under runc, on its Kubernetes node", async () => {
    const pods = JSON.parse(
      await kubectlOut("-n", "sandpit", "get", "pods", "-l", "app.kubernetes.io/component=node", "-o", "json"),
    ) as {
      items: {
        spec: {
          nodeName: string;
          runtimeClassName?: string;
          containers: { securityContext?: { privileged?: boolean } }[];
        };
        status: { phase: string };
      }[];
    };
    expect(pods.items).toHaveLength(1);
    const [pod] = pods.items;
    expect(pod?.spec.nodeName).toBe(nodeName);
    expect(pod?.status.phase).toBe("Running");
    expect(pod?.spec.runtimeClassName).toBeUndefined();
    expect(pod?.spec.containers[0]?.securityContext?.privileged).toBe(true);
  });

  it("CLI: create, exec, copy a file in and out, delete", async () => {
    const { id } = JSON.parse(await sandpit("create", "--json", "--metadata", runLabel, "--timeout", "10m")) as {
      id: string;
    };
    created.push(id);
    expect(id).toMatch(/^sbx_/);

    expect(await sandpit("exec", id, "--", "echo", "hello from kubernetes")).toBe("hello from kubernetes\n");
    // The command ran in a gVisor sandbox that the node pod started (gVisor reports its own kernel).
    expect(await sandpit("exec", id, "--", "sh", "-c", "dmesg | head -n 1")).toContain("gVisor");

    const local = path.join(workDir, "in.txt");
    await writeFile(local, "written through the Service\n");
    await sandpit("cp", local, `${id}:/tmp/in.txt`);
    expect(await sandpit("exec", id, "--", "cat", "/tmp/in.txt")).toBe("written through the Service\n");
    await sandpit("exec", id, "--", "sh", "-c", "echo made inside > /tmp/out.txt");
    const back = path.join(workDir, "out.txt");
    await sandpit("cp", `${id}:/tmp/out.txt`, back);
    expect(await readFile(back, "utf8")).toBe("made inside\n");

    expect(await sandpit("rm", id)).toBe(`${id}\n`);
    expect(JSON.parse(await sandpit("ls", "--json", "--metadata", runLabel))).toEqual([]);
  });

  it("SDK: create, run, write and read files, kill", async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: "k8s-sdk" }, timeoutMs: 600_000 }, connection);
    created.push(sandbox.id);
    const result = await sandbox.commands.run(["sh", "-c", "echo $((6 * 7))"]);
    expect(result).toMatchObject({ exitCode: 0, stdout: "42\n" });

    const bytes = Uint8Array.from([0, 1, 2, 253, 254, 255]);
    await sandbox.files.write("/tmp/data.bin", bytes);
    expect(await sandbox.files.read("/tmp/data.bin", { format: "bytes" })).toEqual(bytes);
    await sandbox.files.write("/tmp/hello.txt", "hello\n");
    expect((await sandbox.commands.run(["cat", "/tmp/hello.txt"])).stdout).toBe("hello\n");

    await sandbox.kill();
    await sandbox.refresh();
    expect(["destroying", "destroyed"]).toContain(sandbox.status);
  });

  it("keeps the node's state in the PostgreSQL StatefulSet, reached through its Service", async () => {
    const sandbox = await Sandbox.create({ metadata: { suite: "k8s-pg" }, timeoutMs: 600_000 }, connection);
    created.push(sandbox.id);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ status: string }>("SELECT status FROM sandboxes WHERE id = $1", [
        sandbox.id,
      ]);
      expect(rows).toEqual([{ status: "running" }]);
    } finally {
      await client.end();
    }
    await sandbox.kill();
  });
});
