/**
 * The rate limit of the outgoing channel (migration-stats.c): a byte budget per 100 ms
 * window, `max-bandwidth / 10`; 0 disables it (qemu-migration.md §2.2). The window itself is
 * moved by the source loop (`migration_rate_reset` at each window end).
 */
import type { RateLimit } from './savevm/handlers.ts';

/** `BUFFER_DELAY`: the length of a rate-limit and bandwidth-measurement window. */
export const BUFFER_DELAY = 100;
/** `XFER_LIMIT_RATIO`: windows per second. */
const XFER_LIMIT_RATIO = 1000 / BUFFER_DELAY;

export class RateLimiter implements RateLimit {
  readonly #transferred: () => number;
  /** Bytes allowed per window; 0 = unlimited (`RATE_LIMIT_DISABLED`). */
  #max = 0;
  #windowStart = 0;

  /** `transferred` counts every byte of the migration so far (`migration_transferred_bytes`). */
  constructor(transferred: () => number) {
    this.#transferred = transferred;
  }

  /** `migration_rate_set`: bytes per second, 0 = unlimited. */
  set(bytesPerSecond: number): void {
    this.#max = Math.floor(bytesPerSecond / XFER_LIMIT_RATIO);
  }

  /** `migration_rate_reset`: a new window starts now. */
  reset(): void {
    this.#windowStart = this.#transferred();
  }

  /** `migration_rate_exceeded`: this window's budget is spent. */
  exceeded(): boolean {
    return this.#max > 0 && this.#transferred() - this.#windowStart > this.#max;
  }
}
