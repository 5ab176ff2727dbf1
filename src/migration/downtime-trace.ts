/**
 * Where the downtime goes: QEMU's downtime checkpoints (the `vmstate_downtime_checkpoint`
 * trace event: src-downtime-start, src-vm-stopped, src-iterable-saved, src-non-iterable-saved,
 * src-downtime-stop on the source; dst-precopy-loadvm-completed, dst-precopy-bh-vm-started on
 * the destination) and the time each entry took while the guest was stopped
 * (`vmstate_downtime_save` / `vmstate_downtime_load`), plus the precopy-thread and load-thread
 * jobs of multifd device state. QEMU only traces them; here they are kept for the last
 * migration, so that `x-query-downtime` can show them.
 *
 * Times are wall-clock milliseconds (fractional), so that a source and a destination on one
 * host can be laid on one time line.
 */

export type DowntimeCheckpoint =
  | 'src-downtime-start'
  | 'src-vm-stopped'
  | 'src-iterable-saved'
  | 'src-non-iterable-saved'
  | 'src-downtime-stop'
  | 'dst-precopy-loadvm-completed'
  | 'dst-precopy-bh-vm-started';

/**
 * What an entry's span was: an END section (`iterable`) or a FULL section (`non-iterable`)
 * saved or loaded, a `saveCompletePrecopyThread` job, a load thread.
 */
export type DowntimeSpanKind = 'iterable' | 'non-iterable' | 'precopy-thread' | 'load-thread';

export interface DowntimeSpan {
  readonly kind: DowntimeSpanKind;
  readonly idstr: string;
  readonly instanceId: number;
  readonly start: number;
  readonly end: number;
}

/** Milliseconds since the Unix epoch, with the monotonic clock's resolution. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export class DowntimeTrace {
  readonly #checkpoints: { checkpoint: DowntimeCheckpoint; at: number }[] = [];
  readonly #spans: DowntimeSpan[] = [];
  readonly #now: () => number;

  constructor(now: () => number = wallClockMs) {
    this.#now = now;
  }

  /** A new migration starts: what the last one recorded goes. */
  reset(): void {
    this.#checkpoints.length = 0;
    this.#spans.length = 0;
  }

  checkpoint(checkpoint: DowntimeCheckpoint): void {
    this.#checkpoints.push({ checkpoint, at: this.#now() });
  }

  /** Runs `body` and records how long it took, whether it succeeded or not. */
  async span<T>(
    kind: DowntimeSpanKind,
    idstr: string,
    instanceId: number,
    body: () => Promise<T>,
  ): Promise<T> {
    const start = this.#now();
    try {
      return await body();
    } finally {
      this.#spans.push({ kind, idstr, instanceId, start, end: this.#now() });
    }
  }

  get checkpoints(): readonly { checkpoint: DowntimeCheckpoint; at: number }[] {
    return this.#checkpoints;
  }

  get spans(): readonly DowntimeSpan[] {
    return this.#spans;
  }
}
