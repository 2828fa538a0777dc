/** Milliseconds since the epoch; one place to read time so that the expiry logic is easy to follow. */
export const now = () => Date.now();
export const iso = (ms: number | null | undefined): string | null =>
  ms === null || ms === undefined ? null : new Date(ms).toISOString();
