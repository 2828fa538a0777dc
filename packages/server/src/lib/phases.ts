import { AsyncLocalStorage } from "node:async_hooks";

/**
 * Wall-clock time of each named phase of one operation (a create: rootfs, network, runsc, agent, ...),
 * in milliseconds. Phases may overlap (the network and the disk are made at the same time), so they do
 * not add up to the total; a phase that runs twice adds up.
 */
export class PhaseTimes {
  private readonly times = new Map<string, number>();

  add(name: string, ms: number): void {
    this.times.set(name, (this.times.get(name) ?? 0) + ms);
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.times].map(([name, ms]) => [name, Math.round(ms * 10) / 10]));
  }

  /** As an HTTP `Server-Timing` header value (`rootfs;dur=12.3, runsc;dur=160.1`). */
  serverTiming(): string {
    return Object.entries(this.toJSON())
      .map(([name, ms]) => `${name};dur=${ms}`)
      .join(", ");
  }
}

/**
 * The operation whose phases are being timed, carried through the async calls below it: the code deep
 * in a create times its part with `phase()` without every layer in between passing a timer along.
 */
const current = new AsyncLocalStorage<PhaseTimes>();

/** Runs `fn` with phases timed into `times`. */
export function timingPhases<T>(times: PhaseTimes, fn: () => Promise<T>): Promise<T> {
  return current.run(times, fn);
}

/** Runs `fn` and, inside a `timingPhases` call, adds its duration to phase `name`. */
export async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const times = current.getStore();
  if (!times) return fn();
  const started = performance.now();
  try {
    return await fn();
  } finally {
    times.add(name, performance.now() - started);
  }
}

/** The phases being timed around the caller, if any (to log them). */
export function currentPhases(): PhaseTimes | undefined {
  return current.getStore();
}
