// The in-sandbox code server runs any code it is sent: only the control plane may reach it. Other sandboxes
// cannot reach its port at all, and inside its own sandbox it answers nothing without its bearer token, which
// the interpreters it starts never inherit.

import type { CodeExecution } from "@sandpit/contract";
import { describe, expect, it } from "vitest";
import type { apiClient, SandboxBody } from "../helpers/api.js";
import { useTestServer } from "../helpers/use-test-server.js";

let api: ReturnType<typeof apiClient>;

useTestServer((_, a) => {
  api = a;
});

const SANDBOX_IP = 'ip -4 -o addr show | awk \'$2 != "lo" {sub(/\\/.*/, "", $4); print $4}\'';

/** Prints the HTTP status the code server answers on 127.0.0.1, with the given Authorization header. */
const LOCAL_STATUS = `
import sys, urllib.request, urllib.error
request = urllib.request.Request("http://127.0.0.1:49981" + sys.argv[1], method=sys.argv[2], data=b'{"code": "1"}' if sys.argv[2] == "POST" else None)
if len(sys.argv) > 3: request.add_header("Authorization", sys.argv[3])
try:
    print(urllib.request.urlopen(request, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
`;

async function runCell(sandbox: SandboxBody, body: Record<string, unknown>) {
  const res = await api.post<CodeExecution>(`/v1/sandboxes/${sandbox.id}/code/run`, body);
  expect(res.status).toBe(200);
  return res.body;
}

describe("the code server", () => {
  it("is unreachable from another sandbox and answers 401 without its token inside its own", async () => {
    const [a, b] = await Promise.all([api.createSandbox(), api.createSandbox()]);
    // Starts a's code server (a bash context: the base template has no Python kernel, bash is enough here).
    expect((await runCell(a, { language: "bash", code: "echo up" })).stdout).toEqual(["up\n"]);
    const aIp = (await api.exec(a.id, { command: SANDBOX_IP })).stdout.trim();
    expect(aIp).toMatch(/^10\./);

    // Inside a, on the address b would use: the server is listening, and refuses a request without the token.
    const local = (path: string, method: string, ...auth: string[]) =>
      api.exec(a.id, { args: ["python3", "-c", LOCAL_STATUS, path, method, ...auth] });
    for (const [path, method] of [
      ["/health", "GET"],
      ["/contexts", "GET"],
      ["/execute", "POST"],
    ] as const) {
      const without = await local(path, method);
      expect(without.stdout).toMatch(/^401 /);
      expect(JSON.parse(without.stdout.slice(4)).error.code).toBe("unauthorized");
      expect((await local(path, method, "Bearer wrong")).stdout).toMatch(/^401 /);
    }
    const onOwnAddress = await api.exec(a.id, {
      command: `curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://${aIp}:49981/health`,
    });
    expect(onOwnAddress.stdout).toBe("401");

    // From b: no connection at all (the firewall, not the token, keeps it out).
    const fromB = await api.exec(b.id, {
      command: `curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://${aIp}:49981/health`,
    });
    expect(fromB.stdout).toBe("000");

    // The interpreters do not inherit the server's token or address.
    const bashEnv = await runCell(a, { language: "bash", code: "env | grep -c '^SANDPIT_CODE' || true" });
    expect(bashEnv.stdout).toEqual(["0\n"]);
    const nodeEnv = await runCell(a, {
      language: "javascript",
      code: "Object.keys(process.env).filter((k) => k.startsWith('SANDPIT_CODE')).length",
    });
    expect(nodeEnv.results[0]!.data["text/plain"]).toBe("0");
  });
});
