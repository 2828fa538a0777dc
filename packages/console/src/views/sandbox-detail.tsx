import { useState } from "preact/hooks";
import type { ConsoleApi, Sandbox } from "../api";
import { age, formatDuration, formatMb, formatTime } from "../format";
import { useNow, usePolling } from "../hooks";
import { Link } from "../router";
import { CodeCell } from "./code-cell";
import { ErrorBanner, Panel, SandboxActions, StateBadge } from "./common";
import { DesktopPanel } from "./desktop-panel";
import { EventTable } from "./event-log";
import { FileBrowser } from "./file-browser";
import { MetricsPanel } from "./metrics-panel";
import { TerminalPanel } from "./terminal-panel";

export type SandboxTab = "overview" | "terminal" | "code" | "desktop" | "files" | "events";

const TABS: { tab: SandboxTab; label: string; suffix: string }[] = [
  { tab: "overview", label: "Overview", suffix: "" },
  { tab: "terminal", label: "Terminal", suffix: "/terminal" },
  { tab: "code", label: "Code", suffix: "/code" },
  { tab: "desktop", label: "Desktop", suffix: "/desktop" },
  { tab: "files", label: "Files", suffix: "/files" },
  { tab: "events", label: "Events", suffix: "/events" },
];

function Details({ sandbox, now }: { sandbox: Sandbox; now: number }) {
  const rows: [string, string][] = [
    ["Template", sandbox.template],
    ["Node", sandbox.node],
    [
      "Resources",
      `${sandbox.resources.vcpus} vCPU · ${formatMb(sandbox.resources.memoryMb)} memory · ${formatMb(sandbox.resources.diskMb)} disk`,
    ],
    ["Created", `${formatTime(sandbox.createdAt)} (${age(sandbox.createdAt, now)} ago)`],
    [
      "Expires",
      sandbox.expiresAt
        ? `${formatTime(sandbox.expiresAt)} (in ${formatDuration(Date.parse(sandbox.expiresAt) - now)}; then ${sandbox.timeoutAction})`
        : "never",
    ],
    ["Lifecycle", sandbox.lifecycle + (sandbox.autoResume ? " · auto-resume" : "")],
    ["Working directory", sandbox.cwd],
    ["User", sandbox.user ?? "root"],
    ["Network", sandbox.networkPolicy.mode],
    ["Ports", sandbox.allPorts ? "all" : sandbox.ports.join(", ") || "none"],
    [
      "Metadata",
      Object.entries(sandbox.metadata)
        .map(([k, v]) => `${k}=${v}`)
        .join("  ") || "none",
    ],
  ];
  if (sandbox.reason) rows.splice(1, 0, ["Reason", sandbox.reason]);
  return (
    <dl class="details">
      {rows.map(([k, v]) => (
        <div key={k} data-testid={`detail-${k.toLowerCase().replace(/ /g, "-")}`}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

/** One sandbox: its state and actions, and tabs for overview, terminal, code, desktop, files and events. */
export function SandboxDetail({
  api,
  id,
  tab,
  query,
}: {
  api: ConsoleApi;
  id: string;
  tab: SandboxTab;
  query: URLSearchParams;
}) {
  const sandbox = usePolling(() => api.getSandbox(id), 3000, [api, id]);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const now = useNow();
  const s = sandbox.data;

  if (!s) {
    return sandbox.error ? <ErrorBanner error={sandbox.error} /> : <p class="empty">Loading…</p>;
  }
  const running = s.status === "running";
  return (
    <div>
      <div class="page-head">
        <div>
          <div class="crumbs">
            <Link to="/">Sandboxes</Link> /
          </div>
          <h1 class="mono" data-testid="sandbox-id">
            {s.id} <StateBadge status={s.status} />
          </h1>
        </div>
        <SandboxActions api={api} sandbox={s} onChanged={() => sandbox.reload()} onError={setActionError} />
      </div>
      <ErrorBanner error={actionError} onDismiss={() => setActionError(undefined)} />
      <nav class="tabs">
        {TABS.map((t) => (
          <Link
            key={t.tab}
            to={`/sandboxes/${s.id}${t.suffix}`}
            class={t.tab === tab ? "tab active" : "tab"}
            testId={`tab-${t.tab}`}
          >
            {t.label}
          </Link>
        ))}
      </nav>
      {tab === "overview" && (
        <>
          <Panel title="Details">
            <Details sandbox={s} now={now} />
          </Panel>
          <Panel title="Metrics">
            <MetricsPanel api={api} sandboxId={s.id} running={running} />
          </Panel>
        </>
      )}
      {tab === "terminal" &&
        (running ? (
          <TerminalPanel api={api} sandboxId={s.id} />
        ) : (
          <p class="empty">The terminal needs a running sandbox; this one is {s.status}.</p>
        ))}
      {tab === "code" &&
        (running ? (
          <Panel title="Code">
            <CodeCell api={api} sandboxId={s.id} />
          </Panel>
        ) : (
          <p class="empty">Code runs in a running sandbox; this one is {s.status}.</p>
        ))}
      {tab === "desktop" &&
        (running ? (
          <DesktopPanel api={api} sandboxId={s.id} />
        ) : (
          <p class="empty">The live view needs a running sandbox; this one is {s.status}.</p>
        ))}
      {tab === "files" &&
        (running ? (
          <FileBrowser api={api} sandbox={s} path={query.get("path") ?? s.cwd} />
        ) : (
          <p class="empty">Files can be browsed while the sandbox runs; this one is {s.status}.</p>
        ))}
      {tab === "events" && (
        <Panel title="Events">
          <EventTable api={api} sandboxId={s.id} />
        </Panel>
      )}
    </div>
  );
}
