/**
 * Detecting a stalled peer (the `x-stall-timeout` parameter; not in QEMU, whose precopy waits
 * on a silent peer until TCP gives up, which can be hours). A side watches a few progress
 * counters — bytes drained by its channel, bytes received while its loader waits — and gives
 * up when one of them stands still for the timeout while something is expected of the peer.
 *
 * The check is a timer reading counters (at most once a second, a quarter of the timeout for
 * short ones): nothing is done per byte or per page.
 */
import type { Writable } from 'node:stream';

/**
 * A progress counter, or null while nothing is expected of the peer (nothing waiting to
 * drain, the loader busy with bytes it already has). Any change counts as progress.
 */
export type ProgressProbe = () => number | null;

/** A peer made no progress for `timeoutMs`. */
export class StallError extends Error {
  override readonly name = 'StallError';
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number) {
    super(`${what} for ${timeoutMs} ms (x-stall-timeout)`);
    this.timeoutMs = timeoutMs;
  }
}

interface Watched {
  readonly what: string;
  readonly probe: ProgressProbe;
  last: number | null;
  since: number;
}

/** The longest pause between two checks (ms). */
const MAX_PERIOD_MS = 1000;
const MIN_PERIOD_MS = 5;

export class StallWatchdog {
  readonly timeoutMs: number;
  readonly #onStall: (err: StallError) => void;
  readonly #watched: Watched[] = [];
  readonly #timer: NodeJS.Timeout;
  #stopped = false;

  /** `timeoutMs` > 0; `onStall` is called once, with the first stall seen, and the watch ends. */
  constructor(timeoutMs: number, onStall: (err: StallError) => void) {
    if (!(Number.isSafeInteger(timeoutMs) && timeoutMs > 0)) {
      throw new RangeError(`stall timeout ${timeoutMs} must be a positive integer (ms)`);
    }
    this.timeoutMs = timeoutMs;
    this.#onStall = onStall;
    const period = Math.min(MAX_PERIOD_MS, Math.max(MIN_PERIOD_MS, Math.floor(timeoutMs / 4)));
    this.#timer = setInterval(() => this.#check(), period);
    // Never what keeps a process alive.
    this.#timer.unref();
  }

  /** Watches one more counter; `what` completes "<what> for N ms (x-stall-timeout)". */
  watch(what: string, probe: ProgressProbe): void {
    this.#watched.push({ what, probe, last: probe(), since: performance.now() });
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  #check(): void {
    if (this.#stopped) return;
    const now = performance.now();
    for (const w of this.#watched) {
      const value = w.probe();
      if (value === null || value !== w.last) {
        w.last = value;
        w.since = now;
      } else if (now - w.since >= this.timeoutMs) {
        this.stop();
        this.#onStall(new StallError(w.what, this.timeoutMs));
        return;
      }
    }
  }
}

/** A watchdog for `timeoutMs`, or null when the timeout is 0 (wait forever). */
export function stallWatchdog(
  timeoutMs: number,
  onStall: (err: StallError) => void,
): StallWatchdog | null {
  return timeoutMs > 0 ? new StallWatchdog(timeoutMs, onStall) : null;
}

/**
 * How far a writable has drained: null when nothing waits in it. A socket's `bytesWritten`
 * counts what it still buffers, so `bytesWritten - writableLength` is what the kernel took;
 * any other writable moves its buffered length when it drains.
 */
export function drainProgress(w: Writable): ProgressProbe {
  return () => {
    const pending = w.writableLength;
    if (pending === 0 || w.destroyed) return null;
    const total = (w as Writable & { bytesWritten?: unknown }).bytesWritten;
    return typeof total === 'number' ? total - pending : -pending;
  };
}
