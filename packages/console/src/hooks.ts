import { useEffect, useRef, useState } from "preact/hooks";

/** How long one poll may take before it counts as failed and the next one is scheduled. */
const POLL_ANSWER_TIMEOUT_MS = 15_000;

/**
 * Runs `load` now and every `intervalMs` while the component is mounted (and `deps` unchanged), keeping
 * its last result and error. `reload` runs it again at once (after an action changed something); `update`
 * changes the kept result at once (e.g. with what an action answered) until the next load replaces it.
 * A load that does not answer within POLL_ANSWER_TIMEOUT_MS is an error, and polling goes on: one request
 * that never answers (a connection the server dropped, a proxy that stalls) must not freeze the page.
 */
export function usePolling<T>(
  load: () => Promise<T>,
  intervalMs: number,
  deps: unknown[],
): { data: T | undefined; error: Error | undefined; reload: () => void; update: (change: (data: T) => T) => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);

  // The caller names what the poll depends on; `load` is read through a ref so a new closure does not restart it.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const result = await withTimeout(loadRef.current(), POLL_ANSWER_TIMEOUT_MS);
        if (stopped) return;
        setData(result);
        setError(undefined);
      } catch (e) {
        if (!stopped) setError(e instanceof Error ? e : new Error(String(e)));
      }
      if (!stopped) timer = setTimeout(run, intervalMs);
    };
    run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [...deps, tick, intervalMs]);

  return {
    data,
    error,
    reload: () => setTick((t) => t + 1),
    update: (change) => setData((d) => (d === undefined ? d : change(d))),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the server did not answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The current time, updated every `intervalMs`, for ages that tick. */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}
