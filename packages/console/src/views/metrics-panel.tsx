import type { ConsoleApi, MetricsSample } from "../api";
import { formatBytes, formatUsage } from "../format";
import { usePolling } from "../hooks";
import { ErrorBanner, NotAvailable } from "./common";

/** A line of the last samples, scaled to `max` (or to the largest value). */
function Sparkline({ values, max }: { values: number[]; max?: number }) {
  if (values.length < 2) return <svg class="spark" viewBox="0 0 100 24" aria-hidden="true" />;
  const top = Math.max(max ?? 0, ...values, 1e-9);
  const points = values
    .map((v, i) => `${((i / (values.length - 1)) * 100).toFixed(1)},${(23 - (v / top) * 22).toFixed(1)}`)
    .join(" ");
  return (
    <svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none" aria-hidden="true">
      <polyline points={points} />
    </svg>
  );
}

function Metric({ label, value, series, max }: { label: string; value: string; series: number[]; max?: number }) {
  return (
    <div class="metric">
      <div class="metric-label">{label}</div>
      <div class="metric-value">{value}</div>
      <Sparkline values={series} {...(max !== undefined ? { max } : {})} />
    </div>
  );
}

/** Live metrics of a running sandbox, from `GET /v1/sandboxes/{id}/metrics`, polled. */
export function MetricsPanel({ api, sandboxId, running }: { api: ConsoleApi; sandboxId: string; running: boolean }) {
  const metrics = usePolling(() => api.metrics(sandboxId), 5000, [api, sandboxId]);
  if (metrics.error) return <ErrorBanner error={metrics.error} />;
  if (!metrics.data) return <p class="empty">Loading…</p>;
  if (!metrics.data.available) return <NotAvailable what="Metrics are" reason={metrics.data.reason} />;
  const samples: MetricsSample[] = metrics.data.data.samples;
  const last = samples.at(-1);
  if (!last) return <p class="empty">{running ? "No samples yet." : "No samples: the sandbox is not running."}</p>;
  const series = (pick: (s: MetricsSample) => number) => samples.map(pick);
  return (
    <div class="metrics" data-testid="metrics">
      <Metric label="CPU" value={`${last.cpuPercent.toFixed(1)}%`} series={series((s) => s.cpuPercent)} max={100} />
      <Metric
        label="Memory"
        value={formatUsage(last.memoryBytes, last.memoryLimitBytes)}
        series={series((s) => s.memoryBytes)}
        max={last.memoryLimitBytes}
      />
      <Metric
        label="Disk"
        value={formatUsage(last.diskBytes, last.diskLimitBytes)}
        series={series((s) => s.diskBytes)}
        max={last.diskLimitBytes}
      />
      <Metric
        label="Network"
        value={`↓ ${formatBytes(last.networkRxBytes)} ↑ ${formatBytes(last.networkTxBytes)}`}
        series={series((s) => s.networkRxBytes + s.networkTxBytes)}
      />
      <Metric
        label="Processes"
        value={last.processes === null ? "—" : String(last.processes)}
        series={series((s) => s.processes ?? 0)}
      />
    </div>
  );
}
