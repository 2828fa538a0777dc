/**
 * The next item of an async iterator, or `undefined` when `ms` passed first; the pending read keeps its
 * place, so the caller can send a keep-alive and wait on the same promise again. `ms` ≤ 0 waits for it.
 */
export function nextWithin<T>(pending: Promise<IteratorResult<T>>, ms: number): Promise<IteratorResult<T> | undefined> {
  if (ms <= 0) return pending;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    pending.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
