import { useState } from "preact/hooks";
import type { ConsoleApi, MetricsSample, Sandbox, SandboxStatus } from "../api";
import { age, formatBytes, formatMb, parseSearch } from "../format";
import { useNow, usePolling } from "../hooks";
import { sandboxStatuses } from "../limits";
import { Link } from "../router";
import { ErrorBanner, SandboxActions, StateBadge } from "./common";
import { CreateSandbox } from "./create-sandbox";

/** "active": everything not destroyed (the API's default); "all" includes destroyed sandboxes. */
type StateFilter = "active" | "all" | SandboxStatus;

type LatestMetrics = { available: false; reason: string } | { available: true; byId: Map<string, MetricsSample> };

/** The latest metrics sample of each running sandbox, polled; "not available" when the server has no metrics. */
function useLatestMetrics(api: ConsoleApi, sandboxes: Sandbox[]) {
  const running = sandboxes.filter((s) => s.status === "running").map((s) => s.id);
  return usePolling<LatestMetrics>(
    async () => {
      const byId = new Map<string, MetricsSample>();
      const answers = await Promise.all(running.map((id) => api.metrics(id).catch(() => undefined)));
      for (const [i, answer] of answers.entries()) {
        if (answer && !answer.available) return answer;
        const last = answer?.data.samples.at(-1);
        if (last) byId.set(running[i]!, last);
      }
      return { available: true, byId };
    },
    5000,
    [api, running.join(",")],
  );
}

export function SandboxList({ api }: { api: ConsoleApi }) {
  const [state, setState] = useState<StateFilter>("active");
  const [template, setTemplate] = useState("");
  const [search, setSearch] = useState("");
  const [creating, setCreating] = useState(false);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const now = useNow();

  const { metadata, words } = parseSearch(search);
  const statuses: SandboxStatus[] = state === "active" ? [] : state === "all" ? [...sandboxStatuses] : [state];
  const list = usePolling(() => api.listSandboxes({ statuses, metadata }), 3000, [
    api,
    state,
    JSON.stringify(metadata),
  ]);
  const templates = usePolling(() => api.listTemplates(), 30_000, [api]);

  const shown = (list.data ?? []).filter(
    (s) =>
      (!template || s.template === template) &&
      words.every((w) =>
        [s.id, s.template, ...Object.entries(s.metadata).flat()].some((field) => field.toLowerCase().includes(w)),
      ),
  );
  const metrics = useLatestMetrics(api, shown);

  return (
    <div>
      <div class="page-head">
        <h1>Sandboxes</h1>
        {!creating && (
          <button type="button" class="primary" onClick={() => setCreating(true)} data-testid="new-sandbox">
            New sandbox
          </button>
        )}
      </div>
      {creating && (
        <CreateSandbox
          api={api}
          templates={templates.data ?? []}
          onCancel={() => setCreating(false)}
          onCreated={(created) => {
            setCreating(false);
            // Listed from the create's own answer at once; the reload that follows brings the server's view.
            list.update((sandboxes) => [created, ...sandboxes.filter((s) => s.id !== created.id)]);
            list.reload();
          }}
        />
      )}
      <div class="filters">
        <label>
          State
          <select
            value={state}
            onChange={(e) => setState(e.currentTarget.value as StateFilter)}
            data-testid="filter-state"
          >
            <option value="active">all but destroyed</option>
            <option value="all">all</option>
            {sandboxStatuses.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Template
          <select value={template} onChange={(e) => setTemplate(e.currentTarget.value)} data-testid="filter-template">
            <option value="">any</option>
            {(templates.data ?? []).map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
        <label class="grow">
          Search
          <input
            type="search"
            value={search}
            placeholder="key=value matches metadata exactly; other words match id, template or metadata"
            onInput={(e) => setSearch(e.currentTarget.value)}
            data-testid="filter-search"
          />
        </label>
      </div>
      <ErrorBanner error={actionError} onDismiss={() => setActionError(undefined)} />
      <ErrorBanner error={list.error} />
      {metrics.data && !metrics.data.available && (
        <p class="muted not-available" data-testid="metrics-not-available" title={metrics.data.reason}>
          Live metrics not available on this server.
        </p>
      )}
      <table class="grid" data-testid="sandbox-table">
        <thead>
          <tr>
            <th>Sandbox</th>
            <th>State</th>
            <th>Template</th>
            <th>Node</th>
            <th>Age</th>
            <th>Resources</th>
            <th>CPU</th>
            <th>Memory</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shown.map((s) => {
            const sample = metrics.data?.available ? metrics.data.byId.get(s.id) : undefined;
            const noMetrics = metrics.data?.available === false ? "n/a" : "—";
            return (
              <tr key={s.id} data-testid="sandbox-row" data-sandbox-id={s.id}>
                <td>
                  <Link to={`/sandboxes/${s.id}`} class="mono" testId="sandbox-link">
                    {s.id}
                  </Link>
                  <div class="chips">
                    {Object.entries(s.metadata).map(([k, v]) => (
                      <span key={k} class="chip">
                        {k}={v}
                      </span>
                    ))}
                  </div>
                </td>
                <td>
                  <StateBadge status={s.status} />
                  {s.reason && <div class="muted small">{s.reason}</div>}
                </td>
                <td>{s.template}</td>
                <td class="mono small" data-testid="node">
                  {s.node}
                </td>
                <td title={s.createdAt}>{age(s.createdAt, now)}</td>
                <td>
                  {s.resources.vcpus} vCPU · {formatMb(s.resources.memoryMb)} · {formatMb(s.resources.diskMb)} disk
                </td>
                <td data-testid="cpu">{sample ? `${sample.cpuPercent.toFixed(1)}%` : noMetrics}</td>
                <td data-testid="memory">{sample ? formatBytes(sample.memoryBytes) : noMetrics}</td>
                <td>
                  <div class="row-actions">
                    {s.status === "running" && (
                      <>
                        <Link to={`/sandboxes/${s.id}/terminal`} class="button" testId="open-terminal">
                          Terminal
                        </Link>
                        <Link to={`/sandboxes/${s.id}/files`} class="button" testId="open-files">
                          Files
                        </Link>
                      </>
                    )}
                    <SandboxActions api={api} sandbox={s} onChanged={() => list.reload()} onError={setActionError} />
                  </div>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {list.data && shown.length === 0 && <p class="empty">No sandboxes match.</p>}
      {!list.data && !list.error && <p class="empty">Loading…</p>}
    </div>
  );
}
