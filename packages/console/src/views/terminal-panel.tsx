import { useEffect, useRef, useState } from "preact/hooks";
import type { ConsoleApi, Terminal } from "../api";
import type { SessionStatus, TerminalSession } from "../terminal-session";
import { ErrorBanner } from "./common";

/**
 * The sandbox's terminal in the page. Attaches to a terminal nobody is attached to (its missed output
 * is replayed), else starts a new login shell. xterm.js is loaded only when a terminal is opened.
 */
export function TerminalPanel({ api, sandboxId }: { api: ConsoleApi; sandboxId: string }) {
  const element = useRef<HTMLDivElement>(null);
  const session = useRef<TerminalSession | undefined>(undefined);
  const [status, setStatus] = useState<SessionStatus>({ state: "connecting" });
  const [error, setError] = useState<unknown>(undefined);
  const [others, setOthers] = useState<Terminal[]>([]);
  /** Which terminal to show: undefined picks one; "new" starts one. */
  const [target, setTarget] = useState<{ terminalId: string | "new" | undefined; generation: number }>({
    terminalId: undefined,
    generation: 0,
  });

  useEffect(() => {
    let cancelled = false;
    (async () => {
      setError(undefined);
      const [{ TerminalSession }, terminals] = await Promise.all([
        import("../terminal-session"),
        api.listTerminals(sandboxId),
      ]);
      if (cancelled || !element.current) return;
      const live = terminals.filter((t) => t.exitCode === null);
      setOthers(live);
      let terminalId = target.terminalId === "new" ? undefined : target.terminalId;
      if (target.terminalId === undefined) terminalId = live.find((t) => !t.attached)?.terminalId;
      element.current.replaceChildren();
      session.current = new TerminalSession(api, sandboxId, element.current, setStatus);
      await session.current.connect(terminalId);
    })().catch((e: unknown) => {
      if (!cancelled) setError(e);
    });
    return () => {
      cancelled = true;
      session.current?.dispose();
      session.current = undefined;
    };
  }, [api, sandboxId, target]);

  const current = status.state === "connecting" ? undefined : status.terminalId;
  const end = async () => {
    if (!current) return;
    try {
      await api.killTerminal(sandboxId, current);
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div class="terminal-panel">
      <div class="terminal-bar">
        <span data-testid="terminal-status" data-state={status.state}>
          {status.state === "connecting" && "Connecting…"}
          {status.state === "connected" && `Connected to ${status.terminalId}`}
          {status.state === "exited" && `The program exited with code ${status.exitCode}`}
          {status.state === "closed" && `Disconnected: ${status.reason}`}
        </span>
        <div class="actions">
          {others.filter((t) => t.terminalId !== current).length > 0 && (
            <select
              value=""
              onChange={(e) => setTarget({ terminalId: e.currentTarget.value, generation: target.generation + 1 })}
              data-testid="terminal-switch"
            >
              <option value="">Switch to…</option>
              {others
                .filter((t) => t.terminalId !== current)
                .map((t) => (
                  <option key={t.terminalId} value={t.terminalId}>
                    {t.terminalId} ({t.command.join(" ")}
                    {t.attached ? ", attached elsewhere" : ""})
                  </option>
                ))}
            </select>
          )}
          {status.state === "closed" && (
            <button
              type="button"
              onClick={() => setTarget({ terminalId: status.terminalId, generation: target.generation + 1 })}
            >
              Reconnect
            </button>
          )}
          <button
            type="button"
            onClick={() => setTarget({ terminalId: "new", generation: target.generation + 1 })}
            data-testid="terminal-new"
          >
            New terminal
          </button>
          {status.state === "connected" && (
            <button type="button" class="danger" onClick={end} data-testid="terminal-end">
              End
            </button>
          )}
        </div>
      </div>
      <ErrorBanner error={error} />
      <div class="terminal-host" ref={element} data-testid="terminal" />
    </div>
  );
}
