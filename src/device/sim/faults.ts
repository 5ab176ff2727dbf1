/**
 * Fault injection for simulated devices (not part of the device interface): failing arcs,
 * dropping to ERROR, damaging or stalling the saved stream, and the unfixed kernel's hang on
 * STOP_COPY -> PRE_COPY* (vfio-uapi.md §4.3). Every fault stays until it fires or is cleared.
 */
import type { ErrnoName, MigState } from '../../uapi/index.ts';

export interface ArcFaultOptions {
  /** Fail the k-th arc (1-based) of a SET. */
  arc?: number;
  /** Fail an arc whose destination is this state. */
  reaching?: MigState;
  /** errno of the failed SET; default EIO. */
  errno?: ErrnoName;
  /** Leave the device in ERROR instead of the state before the arc. */
  toError?: boolean;
  /**
   * With `arc`: how many of the next SETs this applies to (default 1). Otherwise how many
   * times it fires (default 1).
   */
  times?: number;
}

interface ArcRule {
  arc: number | undefined;
  reaching: MigState | undefined;
  errno: ErrnoName;
  toError: boolean;
  /** SETs left (arc rules) or firings left (others). */
  left: number;
}

export interface FiredArcFault {
  errno: ErrnoName;
  toError: boolean;
}

export class SimFaults {
  #rules: ArcRule[] = [];
  #corrupt: { offset: number; xor: number }[] = [];
  #truncateAt: number | null = null;
  #stall: number | 'forever' | null = null;
  #stallWaiters: (() => void)[] = [];
  #legacyHang = false;

  /** Fail an arc of the next SET(s) (by position) or an arc reaching a state. */
  failArc(opts: ArcFaultOptions): void {
    const times = opts.times ?? 1;
    if (opts.arc !== undefined && (!Number.isInteger(opts.arc) || opts.arc < 1)) {
      throw new Error(`failArc: arc ${opts.arc} is not a 1-based arc number`);
    }
    if (!Number.isInteger(times) || times < 1) throw new Error(`failArc: times ${times} < 1`);
    this.#rules.push({
      arc: opts.arc,
      reaching: opts.reaching,
      errno: opts.errno ?? 'EIO',
      toError: opts.toError ?? false,
      left: times,
    });
  }

  /** The next arc, in whatever SET, fails and leaves the device in ERROR. */
  dropToError(errno: ErrnoName = 'EIO'): void {
    this.failArc({ errno, toError: true });
  }

  /** XOR the saved-stream byte at `offset` (counted from the start of each saving fd). */
  corruptStream(offset: number, xor = 0xff): void {
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new Error(`corruptStream: bad offset ${offset}`);
    if ((xor & 0xff) === 0) throw new Error('corruptStream: xor 0 changes nothing');
    this.#corrupt.push({ offset, xor: xor & 0xff });
  }

  /** Each saving fd ends after `bytes` bytes (0 in STOP_COPY, ENOMSG in PRE_COPY*). */
  truncateStream(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw new Error(`truncateStream: bad length ${bytes}`);
    this.#truncateAt = bytes;
  }

  /** Delay every read by `ms`, or hold every read until `clearStall()`. */
  stallReads(ms: number | 'forever'): void {
    if (ms !== 'forever' && (!Number.isFinite(ms) || ms < 0))
      throw new Error(`stallReads: bad delay ${ms}`);
    this.#stall = ms;
  }

  clearStall(): void {
    this.#stall = null;
    for (const wake of this.#stallWaiters.splice(0)) wake();
  }

  /** SET STOP_COPY -> PRE_COPY* never completes and holds the state mutex (unfixed kernels). */
  legacyHang(on = true): void {
    this.#legacyHang = on;
  }

  /** Removes every fault and releases stalled reads. */
  clear(): void {
    this.#rules = [];
    this.#corrupt = [];
    this.#truncateAt = null;
    this.#legacyHang = false;
    this.clearStall();
  }

  // ---- driver side -------------------------------------------------------------------------

  get hangsOnBlockedArc(): boolean {
    return this.#legacyHang;
  }

  /** Called by the driver for arc number `arc` (1-based) of the SET in progress, towards `to`. */
  takeArcFault(arc: number, to: MigState): FiredArcFault | null {
    const i = this.#rules.findIndex(
      (r) =>
        (r.arc === undefined || r.arc === arc) && (r.reaching === undefined || r.reaching === to),
    );
    if (i < 0) return null;
    const rule = this.#rules[i]!;
    // Positional rules can match once per SET (arc k occurs once) and age in endSet().
    if (rule.arc === undefined && --rule.left === 0) this.#rules.splice(i, 1);
    return { errno: rule.errno, toError: rule.toError };
  }

  /** Called when a SET finishes (successfully or not): positional rules age by one SET. */
  endSet(): void {
    for (const r of this.#rules) if (r.arc !== undefined) r.left--;
    this.#rules = this.#rules.filter((r) => r.left > 0);
  }

  /** Waits as a stalled read would. */
  async stallRead(): Promise<void> {
    const stall = this.#stall;
    if (stall === null) return;
    if (stall === 'forever') {
      await new Promise<void>((resolve) => this.#stallWaiters.push(resolve));
      return;
    }
    await new Promise<void>((resolve) => setTimeout(resolve, stall));
  }

  /** How many bytes a read at stream offset `offset` may still return (truncation). */
  readAllowance(offset: number, wanted: number): number {
    if (this.#truncateAt === null) return wanted;
    return Math.max(0, Math.min(wanted, this.#truncateAt - offset));
  }

  /** Applies corruption to `bytes`, which were read at stream offset `offset`. */
  damage(bytes: Uint8Array, offset: number): void {
    for (const c of this.#corrupt) {
      const at = c.offset - offset;
      if (at >= 0 && at < bytes.length) bytes[at]! ^= c.xor;
    }
  }
}
