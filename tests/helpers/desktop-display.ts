import { type apiClient, waitFor } from "./api.js";

/**
 * Starts the display of a desktop-template sandbox the way `@e2b/desktop` does (Xvfb :0, then an Xfce
 * session, as the sandbox's default user) and waits until the window manager, the desktop and the panel
 * run. Stands in for Sandpit's own desktop server, which starts the display at create.
 */
export async function startDisplay(api: ReturnType<typeof apiClient>, sandboxId: string): Promise<void> {
  const answers = async (command: string) =>
    (await api.exec(sandboxId, { command, user: "user", timeoutMs: 10_000 })).exitCode === 0 ? true : undefined;
  if (!(await answers("xdpyinfo -display :0 >/dev/null 2>&1"))) {
    await api.exec(sandboxId, {
      command: "Xvfb :0 -ac -screen 0 1024x768x24 -dpi 96 -nolisten tcp",
      user: "user",
      background: true,
    });
    await waitFor(() => answers("xdpyinfo -display :0 >/dev/null 2>&1"), 30_000, "Xvfb to answer");
  }
  await api.exec(sandboxId, {
    command: "dbus-launch startxfce4",
    user: "user",
    env: { DISPLAY: ":0" },
    background: true,
  });
  await waitFor(
    () => answers("pgrep -x xfwm4 >/dev/null && pgrep -x xfdesktop >/dev/null && pgrep -x xfce4-panel >/dev/null"),
    60_000,
    "the Xfce session",
  );
}
