import { useState } from "preact/hooks";
import type { ConsoleApi, Sandbox, Template } from "../api";
import { parseKeyValueLines } from "../format";
import { limits } from "../limits";
import { ErrorBanner } from "./common";

const MEMORY_CHOICES_MB = [256, 512, 1024, 2048, 4096, 8192, 16_384].filter(
  (mb) => mb >= limits.memoryMb.min && mb <= limits.memoryMb.max,
);

/** The create form: template, vCPUs, memory, timeout and metadata; the rest takes the API's defaults. */
export function CreateSandbox({
  api,
  templates,
  onCreated,
  onCancel,
}: {
  api: ConsoleApi;
  templates: Template[];
  onCreated: (s: Sandbox) => void;
  onCancel: () => void;
}) {
  const ready = templates.filter((t) => t.status === "ready");
  const [template, setTemplate] = useState(ready.some((t) => t.name === "base") ? "base" : (ready[0]?.name ?? "base"));
  const [vcpus, setVcpus] = useState<number>(limits.vcpus.default);
  const [memoryMb, setMemoryMb] = useState<number>(limits.memoryMb.default);
  const [timeoutMin, setTimeoutMin] = useState<number>(limits.timeoutMs.default / 60_000);
  const [metadata, setMetadata] = useState("");
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<unknown>(undefined);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    let parsedMetadata: Record<string, string>;
    try {
      parsedMetadata = parseKeyValueLines(metadata);
    } catch (err) {
      setError(err);
      return;
    }
    setCreating(true);
    try {
      const created = await api.createSandbox({
        template,
        resources: { vcpus, memoryMb },
        timeoutMs: Math.round(timeoutMin * 60_000),
        metadata: parsedMetadata,
      });
      onCreated(created);
    } catch (err) {
      setError(err);
    } finally {
      setCreating(false);
    }
  };

  return (
    <form class="panel create-form" onSubmit={submit} data-testid="create-form">
      <div class="panel-head">
        <h2>New sandbox</h2>
      </div>
      <div class="form-grid">
        <label>
          Template
          <select value={template} onChange={(e) => setTemplate(e.currentTarget.value)} data-testid="create-template">
            {templates.map((t) => (
              <option key={t.name} value={t.name} disabled={t.status !== "ready"}>
                {t.name}
                {t.status !== "ready" ? ` (${t.status})` : ""}
              </option>
            ))}
          </select>
        </label>
        <label>
          vCPUs
          <input
            type="number"
            min={limits.vcpus.min}
            max={limits.vcpus.max}
            value={vcpus}
            onInput={(e) => setVcpus(Number(e.currentTarget.value))}
            data-testid="create-vcpus"
          />
        </label>
        <label>
          Memory
          <select
            value={String(memoryMb)}
            onChange={(e) => setMemoryMb(Number(e.currentTarget.value))}
            data-testid="create-memory"
          >
            {MEMORY_CHOICES_MB.map((mb) => (
              <option key={mb} value={String(mb)}>
                {mb >= 1024 ? `${mb / 1024} GiB` : `${mb} MiB`}
              </option>
            ))}
          </select>
        </label>
        <label>
          Timeout (minutes)
          <input
            type="number"
            min={1}
            max={limits.timeoutMs.max / 60_000}
            value={timeoutMin}
            onInput={(e) => setTimeoutMin(Number(e.currentTarget.value))}
            data-testid="create-timeout"
          />
        </label>
        <label class="wide">
          Metadata (key=value, one per line)
          <textarea
            rows={2}
            value={metadata}
            onInput={(e) => setMetadata(e.currentTarget.value)}
            placeholder="team=infra"
            data-testid="create-metadata"
          />
        </label>
      </div>
      <ErrorBanner error={error} />
      <div class="form-actions">
        <button type="submit" class="primary" disabled={creating} data-testid="create-submit">
          {creating ? "Creating…" : "Create"}
        </button>
        <button type="button" class="ghost" onClick={onCancel} disabled={creating}>
          Cancel
        </button>
      </div>
    </form>
  );
}
