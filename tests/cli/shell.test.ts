// `npx sandpit shell` as a user runs it in a real terminal: driven through tmux (send-keys, capture-pane).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { type apiClient, waitFor } from "../helpers/api.js";
import type { TestServer } from "../helpers/server.js";
import { useTestServer } from "../helpers/use-test-server.js";

let server: TestServer;
let api: ReturnType<typeof apiClient>;
useTestServer((s, a) => {
  server = s;
  api = a;
});

const cliEntry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../packages/cli/dist/main.js");
/** A tmux server of our own (its own socket), so nothing else of the user's is touched. */
const socket = `sandpit-test-${process.pid}`;
const exitFile = `/var/tmp/sandpit-shell-exit-${process.pid}`;
const tmux = (...args: string[]) => execFileSync("tmux", ["-L", socket, ...args]).toString();
const screen = () => tmux("capture-pane", "-p", "-t", "shell");
const until = (pattern: RegExp) =>
  waitFor(async () => (pattern.test(screen()) ? true : undefined), 15_000, `${pattern}`);

afterAll(() => {
  try {
    tmux("kill-server");
  } catch {
    // already gone
  }
  rmSync(exitFile, { force: true });
});

describe("sandpit shell", () => {
  it("gives an interactive shell: typing, resize, Ctrl-C and the exit code", async () => {
    const sbx = await api.createSandbox();
    const env = `SANDPIT_URL=${server.url} SANDPIT_API_KEY=${server.apiKey}`;
    tmux(
      "new-session",
      "-d",
      "-s",
      "shell",
      "-x",
      "100",
      "-y",
      "30",
      `env ${env} ${process.execPath} ${cliEntry} shell ${sbx.id}; echo "EXIT=$?" > ${exitFile}; sleep 600`,
    );
    tmux("send-keys", "-t", "shell", "echo hi-$((6*7))", "Enter");
    await until(/^hi-42$/m);

    tmux("send-keys", "-t", "shell", "clear; tput cols", "Enter");
    await until(/^100$/m);
    tmux("resize-window", "-t", "shell", "-x", "120", "-y", "40");
    tmux("send-keys", "-t", "shell", "clear; tput cols; tput lines", "Enter");
    await until(/^120\n40$/m);

    tmux("send-keys", "-t", "shell", "sleep 100", "Enter");
    await new Promise((r) => setTimeout(r, 700));
    tmux("send-keys", "-t", "shell", "C-c");
    tmux("send-keys", "-t", "shell", "echo after-$((1+1))", "Enter");
    await until(/^after-2$/m);

    tmux("send-keys", "-t", "shell", "exit 5", "Enter");
    await waitFor(async () => (existsSync(exitFile) ? true : undefined), 15_000, "the shell to exit");
    expect(readFileSync(exitFile, "utf8").trim()).toBe("EXIT=5");
    await api.del(`/v1/sandboxes/${sbx.id}`);
  });
});
