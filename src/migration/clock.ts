/**
 * The time the source loop runs on: 100 ms rate-limit windows, bandwidth, downtime, RAM's
 * 50 ms slices (qemu-migration.md §2.2). Injected, so the same loop can later run on a
 * simulated link and predict downtime (DESIGN.md "Concurrency and time").
 */
export interface MigrationClock {
  /** Milliseconds on a monotonic clock (fractions allowed). */
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Wall time: `performance.now()` and timers. */
export const realClock: MigrationClock = {
  now: () => performance.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || signal?.aborted === true) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  },
};

/**
 * Lets pending I/O callbacks and timers run (QMP, return path, socket drains). The source loop
 * calls it between passes so a migration never starves the event loop, whatever the clock.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
