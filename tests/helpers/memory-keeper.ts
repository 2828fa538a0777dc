import type { apiClient } from "./api.js";

/**
 * A process whose state lives only in memory: a random token chosen at start and a counter, written
 * every 100 ms to /tmp (a tmpfs: memory too). The same token with a larger counter after a resume or
 * in a restored copy proves that the same process continued.
 */
export const memoryKeeperScript = `
import os, time, secrets
token = secrets.token_hex(8)
n = 0
while True:
    n += 1
    with open("/tmp/state.tmp", "w") as f:
        f.write(f"{os.getpid()} {token} {n}")
    os.replace("/tmp/state.tmp", "/tmp/state")
    time.sleep(0.1)
`;

export interface KeeperState {
  pid: string;
  token: string;
  n: number;
}

/** Reads what the keeper last wrote in sandbox `id`. */
export async function keeperState(api: ReturnType<typeof apiClient>, id: string): Promise<KeeperState> {
  const [pid, token, n] = (await api.exec(id, { command: "cat /tmp/state" })).stdout.trim().split(" ");
  return { pid: pid!, token: token!, n: Number(n) };
}

/** Starts the keeper in the background and waits until it has written its state once. */
export async function startKeeper(api: ReturnType<typeof apiClient>, id: string): Promise<KeeperState> {
  await api.put(`/v1/sandboxes/${id}/files?path=/workspace/keeper.py`, memoryKeeperScript);
  await api.post(`/v1/sandboxes/${id}/exec`, { command: "python3 /workspace/keeper.py", background: true });
  for (let i = 0; i < 100; i++) {
    const r = await api.exec(id, { command: "cat /tmp/state 2>/dev/null || true" });
    if (r.stdout.split(" ").length === 3) return keeperState(api, id);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("the memory keeper did not start");
}
