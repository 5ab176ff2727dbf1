/**
 * A token bucket for rate limiting: tokens accrue at `rate` per second up to `capacity`, and a
 * consumer takes whole tokens. The clock is passed in (milliseconds), so it is testable.
 */
export class TokenBucket {
  readonly rate: number;
  readonly capacity: number;
  #tokens = 0;
  #last: number;

  constructor(ratePerSecond: number, capacity: number, nowMs: number) {
    if (!(ratePerSecond > 0 && Number.isFinite(ratePerSecond))) {
      throw new RangeError(`token bucket: rate ${ratePerSecond} is not a positive number`);
    }
    if (!(capacity >= 1)) throw new RangeError(`token bucket: capacity ${capacity} is below 1`);
    this.rate = ratePerSecond;
    this.capacity = capacity;
    this.#last = nowMs;
  }

  /** Empties the bucket and restarts accrual at `nowMs` (after a pause: no saved-up burst). */
  reset(nowMs: number): void {
    this.#tokens = 0;
    this.#last = nowMs;
  }

  /** Takes up to `max` whole tokens; returns how many. */
  take(max: number, nowMs: number): number {
    this.#refill(nowMs);
    const n = Math.min(max, Math.floor(this.#tokens));
    this.#tokens -= n;
    return n;
  }

  /** Milliseconds until `n` tokens are available (0 if they are). */
  msUntil(n: number, nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens >= n ? 0 : ((n - this.#tokens) * 1000) / this.rate;
  }

  #refill(nowMs: number): void {
    if (nowMs > this.#last) {
      this.#tokens = Math.min(
        this.capacity,
        this.#tokens + ((nowMs - this.#last) * this.rate) / 1000,
      );
      this.#last = nowMs;
    }
  }
}
