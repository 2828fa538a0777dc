import { useEffect, useState } from "preact/hooks";
import type { ConsoleApi, DesktopStream } from "../api";
import { ErrorBanner } from "./common";

/**
 * The sandbox's live view: start (interactive or view-only) and stop, and the noVNC page in a frame. The
 * page is served by the sandbox, so it is framed only when it has an origin of its own (the server has a
 * domain: `{port}-{id}.{domain}`); on the console's own origin it could read the signed-in key, so it then
 * opens in a tab of its own instead.
 */
export function DesktopPanel({ api, sandboxId }: { api: ConsoleApi; sandboxId: string }) {
  const [stream, setStream] = useState<DesktopStream | null | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);

  useEffect(() => {
    let cancelled = false;
    api.desktopStream(sandboxId).then(
      (s) => !cancelled && setStream(s),
      (e: unknown) => !cancelled && setError(e),
    );
    return () => {
      cancelled = true;
    };
  }, [api, sandboxId]);

  const act = async (action: () => Promise<DesktopStream | null>) => {
    setBusy(true);
    setError(undefined);
    try {
      setStream(await action());
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const start = (viewOnly: boolean) => act(() => api.startDesktopStream(sandboxId, viewOnly));
  const stop = () =>
    act(async () => {
      await api.stopDesktopStream(sandboxId);
      return null;
    });
  const ownOrigin = stream ? new URL(stream.url).origin !== window.location.origin : false;

  return (
    <div class="desktop-panel">
      <div class="terminal-bar">
        <button type="button" disabled={busy} onClick={() => start(false)} data-testid="live-view-start">
          Start live view
        </button>
        <button type="button" disabled={busy} onClick={() => start(true)} data-testid="live-view-start-view-only">
          Start view-only
        </button>
        <button type="button" class="danger" disabled={busy || !stream} onClick={stop} data-testid="live-view-stop">
          Stop
        </button>
        {stream && (
          <span class="muted" data-testid="live-view-mode">
            {stream.viewOnly ? "view-only" : "interactive"}
          </span>
        )}
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(undefined)} />
      {stream === undefined && !error && <p class="empty">Loading…</p>}
      {stream === null && <p class="empty">No live view is running.</p>}
      {stream &&
        (ownOrigin ? (
          <iframe
            class="live-view"
            src={stream.url}
            title="Live view"
            allow="clipboard-read; clipboard-write"
            data-testid="live-view"
          />
        ) : (
          <p class="empty">
            <a href={stream.url} target="_blank" rel="noopener noreferrer" data-testid="live-view-link">
              Open the live view
            </a>{" "}
            in a tab of its own (it is framed here when the server has a domain, SANDPIT_DOMAIN).
          </p>
        ))}
    </div>
  );
}
