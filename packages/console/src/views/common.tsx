import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ApiError, type ConsoleApi, type Sandbox } from "../api";

export function StateBadge({ status }: { status: string }) {
  return (
    <span class={`state state-${status}`} data-testid="state" data-state={status}>
      {status}
    </span>
  );
}

/** An error as the console shows it: the API's message, with the fields it names. */
export function describeError(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  return e instanceof Error ? e.message : String(e);
}

export function ErrorBanner({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  if (!error) return null;
  return (
    <div class="error banner" role="alert">
      <span>{describeError(error)}</span>
      {onDismiss && (
        <button type="button" class="ghost" onClick={onDismiss} aria-label="Dismiss">
          ×
        </button>
      )}
    </div>
  );
}

/** Shown where an endpoint this server does not have yet would be. */
export function NotAvailable({ what, reason }: { what: string; reason: string }) {
  return (
    <p class="muted not-available" data-testid="not-available" title={reason}>
      {what} not available on this server.
    </p>
  );
}

export function Panel({
  title,
  actions,
  children,
}: {
  title: string;
  actions?: ComponentChildren;
  children: ComponentChildren;
}) {
  return (
    <section class="panel">
      <div class="panel-head">
        <h2>{title}</h2>
        {actions && <div class="panel-actions">{actions}</div>}
      </div>
      {children}
    </section>
  );
}

type Action = "pause" | "resume" | "destroy";
const PENDING_LABEL: Record<Action, string> = { pause: "Pausing…", resume: "Resuming…", destroy: "Destroying…" };

/**
 * Pause, resume and destroy, offered as the sandbox's state allows. Reports the sandbox as the server
 * answered (destroy: the sandbox as it is afterwards) or the error.
 */
export function SandboxActions({
  api,
  sandbox,
  onChanged,
  onError,
}: {
  api: ConsoleApi;
  sandbox: Sandbox;
  onChanged: (s: Sandbox | undefined) => void;
  onError: (e: unknown) => void;
}) {
  const [pending, setPending] = useState<Action | undefined>(undefined);
  const run = async (action: Action) => {
    if (action === "destroy" && !confirm(`Destroy ${sandbox.id}? Its files and processes are gone for good.`)) return;
    setPending(action);
    try {
      if (action === "pause") onChanged(await api.pause(sandbox.id));
      else if (action === "resume") onChanged(await api.resume(sandbox.id));
      else {
        await api.destroy(sandbox.id);
        onChanged(await api.getSandbox(sandbox.id).catch(() => undefined));
      }
    } catch (e) {
      onError(e);
    } finally {
      setPending(undefined);
    }
  };
  const gone = sandbox.status === "destroyed" || sandbox.status === "destroying";
  if (pending) return <span class="pending">{PENDING_LABEL[pending]}</span>;
  return (
    <div class="actions">
      {sandbox.status === "running" && (
        <button type="button" onClick={() => run("pause")} data-testid="pause">
          Pause
        </button>
      )}
      {sandbox.status === "paused" && (
        <button type="button" onClick={() => run("resume")} data-testid="resume">
          Resume
        </button>
      )}
      {!gone && (
        <button type="button" class="danger" onClick={() => run("destroy")} data-testid="destroy">
          Destroy
        </button>
      )}
    </div>
  );
}
