import { useEffect, useRef, useState } from "preact/hooks";
import type { CodeLanguage, ConsoleApi } from "../api";
import { addEvent, cellDuration, type OutputBlock, type ResultView } from "../code-output";
import { describeError } from "./common";

const LANGUAGES: { value: CodeLanguage; label: string }[] = [
  { value: "python", label: "Python" },
  { value: "javascript", label: "JavaScript" },
  { value: "bash", label: "Bash" },
];

/** The most recent cells kept on the page; older ones drop off the top. */
const KEPT_CELLS = 20;

interface CellRun {
  key: number;
  code: string;
  language: CodeLanguage;
  blocks: OutputBlock[];
  /** How the cell ended; undefined while it runs. */
  end?: { status: string; executionCount: number | null; durationMs: number };
  /** Why the request failed (not an error of the cell itself, which is a block). */
  failure?: string;
}

function ResultBlock({ view, isMainResult }: { view: ResultView | undefined; isMainResult: boolean }) {
  const label = isMainResult ? "result" : "display";
  if (view === undefined) return <pre class="cell-text muted">(a result in a form the console cannot show)</pre>;
  if (view.kind === "image")
    return <img class="cell-image" src={view.src} alt={`${label} (${view.mime})`} data-testid="cell-image" />;
  if (view.kind === "html") {
    // No allow-scripts and no allow-same-origin: the sandbox's HTML can neither run code nor reach the console.
    return <iframe class="cell-html" sandbox="" srcdoc={view.html} title={`HTML ${label}`} data-testid="cell-html" />;
  }
  return (
    <pre class="cell-text" data-testid="cell-result" data-mime={view.mime}>
      {view.text}
    </pre>
  );
}

function CellOutput({ run }: { run: CellRun }) {
  const count = run.end?.executionCount;
  return (
    <div class="cell-run" data-testid="cell-run" data-status={run.end?.status ?? (run.failure ? "failed" : "running")}>
      <div class="cell-input">
        <span class="cell-count muted">[{count ?? (run.end || run.failure ? " " : "*")}]</span>
        <pre class="cell-code">{run.code}</pre>
      </div>
      <div class="cell-output">
        {run.blocks.map((block, i) => {
          if (block.kind === "result")
            return <ResultBlock key={i} view={block.view} isMainResult={block.isMainResult} />;
          if (block.kind === "error") {
            return (
              <pre key={i} class="cell-error" data-testid="cell-error">
                {block.traceback.trim() !== "" ? block.traceback : `${block.name}: ${block.value}`}
              </pre>
            );
          }
          return (
            <pre key={i} class={`cell-stream cell-${block.kind}`} data-testid={`cell-${block.kind}`}>
              {block.text}
            </pre>
          );
        })}
        {run.failure && (
          <div class="error banner" role="alert">
            {run.failure}
          </div>
        )}
        {run.end && (
          <div class="cell-status muted">
            {run.end.status} · {cellDuration(run.end.durationMs)}
          </div>
        )}
      </div>
    </div>
  );
}

/**
 * A code cell: runs code in the sandbox's default context of the chosen language (a live interpreter that
 * keeps its variables between runs) and shows its output, results (images, HTML, text) and errors as they come.
 */
export function CodeCell({ api, sandboxId }: { api: ConsoleApi; sandboxId: string }) {
  const [code, setCode] = useState("");
  const [language, setLanguage] = useState<CodeLanguage>("python");
  const [runs, setRuns] = useState<CellRun[]>([]);
  const running = useRef<AbortController | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const nextKey = useRef(0);

  // Leaving the page stops a running cell (the context keeps its state).
  useEffect(() => () => running.current?.abort(), []);

  const update = (key: number, change: (run: CellRun) => CellRun) =>
    setRuns((all) => all.map((r) => (r.key === key ? change(r) : r)));

  const run = async () => {
    if (busy || code.trim() === "") return;
    const key = nextKey.current++;
    const abort = new AbortController();
    running.current = abort;
    setBusy(true);
    setRuns((all) => [...all, { key, code, language, blocks: [] }].slice(-KEPT_CELLS));
    try {
      await api.runCode(
        sandboxId,
        { code, language },
        (event) => {
          if (event.type === "end") {
            const { status, executionCount, durationMs } = event;
            update(key, (r) => ({ ...r, end: { status, executionCount, durationMs } }));
          } else {
            update(key, (r) => ({ ...r, blocks: addEvent(r.blocks, event) }));
          }
        },
        abort.signal,
      );
    } catch (e) {
      update(key, (r) => ({ ...r, failure: abort.signal.aborted ? "Stopped." : describeError(e) }));
    } finally {
      running.current = undefined;
      setBusy(false);
    }
  };

  return (
    <div class="code-cell">
      {runs.map((r) => (
        <CellOutput key={r.key} run={r} />
      ))}
      <textarea
        class="cell-editor mono"
        data-testid="cell-code"
        rows={6}
        spellcheck={false}
        placeholder="print('hello')   — Ctrl+Enter runs"
        value={code}
        onInput={(e) => setCode(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            void run();
          }
        }}
      />
      <div class="cell-actions">
        <select
          data-testid="cell-language"
          value={language}
          onChange={(e) => setLanguage(e.currentTarget.value as CodeLanguage)}
          aria-label="Language"
        >
          {LANGUAGES.map((l) => (
            <option key={l.value} value={l.value}>
              {l.label}
            </option>
          ))}
        </select>
        {busy ? (
          <button type="button" class="danger" data-testid="cell-stop" onClick={() => running.current?.abort()}>
            Stop
          </button>
        ) : (
          <button type="button" class="primary" data-testid="cell-run-button" onClick={() => void run()}>
            Run
          </button>
        )}
        <span class="muted">Runs in the sandbox's default {language} context: variables stay between runs.</span>
      </div>
    </div>
  );
}
