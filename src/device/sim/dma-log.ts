/**
 * The driver half of device DMA dirty logging (vfio-uapi.md §7): what mlx5's tracker does
 * after the core checks. Dirty granules are kept sparse (a set of granule numbers), so a log
 * over a huge IOVA space costs memory only for what the device actually wrote.
 */
import {
  fail,
  reportBitmapBytes,
  setReportBits,
  validateLoggingReport,
  validateLoggingStart,
} from '../../uapi/index.ts';
import type { IovaRange } from '../../uapi/index.ts';

export interface DmaLogLimits {
  /** Most ranges the tracker supports; more are merged (superset tracking). */
  maxRanges: number;
  /** Smallest and largest tracking granule, powers of two. */
  minGranule: bigint;
  maxGranule: bigint;
}

export const DEFAULT_DMA_LOG_LIMITS: DmaLogLimits = {
  maxRanges: 8,
  minGranule: 4096n,
  maxGranule: 2n << 20n,
};

/** Largest power of two <= x (x >= 1). */
function floorPowerOfTwo(x: bigint): bigint {
  let p = 1n;
  while (p << 1n <= x) p <<= 1n;
  return p;
}

/**
 * Merges ranges until at most `max` remain, always closing the smallest gap between
 * neighbours (`vfio_combine_iova_ranges`): the result covers every input byte.
 */
export function combineRanges(ranges: readonly IovaRange[], max: number): IovaRange[] {
  const spans = ranges
    .map((r) => ({ start: r.iova, end: r.iova + r.length }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  while (spans.length > max) {
    let best = 0;
    for (let i = 1; i + 1 < spans.length; i++) {
      if (spans[i + 1]!.start - spans[i]!.end < spans[best + 1]!.start - spans[best]!.end) best = i;
    }
    spans[best]!.end = spans[best + 1]!.end;
    spans.splice(best + 1, 1);
  }
  return spans.map((s) => ({ iova: s.start, length: s.end - s.start }));
}

/** The bitmap must hold whole u64 words for every report page; shorter is unwritable memory. */
export function checkReportBitmap(length: bigint, pageSize: bigint, bitmap: Uint8Array): void {
  const need = reportBitmapBytes(length, pageSize);
  if (bitmap.length < need) {
    fail('EFAULT', `DMA_LOGGING_REPORT: bitmap is ${bitmap.length} bytes, ${need} needed`);
  }
}

export class DmaDirtyLog {
  readonly limits: DmaLogLimits;
  #ranges: { start: number; end: number }[] = [];
  #granule = 0;
  /** Dirty granule numbers (iova / granule). IOVAs up to 2^53 are exact as numbers. */
  readonly #dirty = new Set<number>();
  #started = false;

  constructor(limits: DmaLogLimits = DEFAULT_DMA_LOG_LIMITS) {
    this.limits = limits;
  }

  get started(): boolean {
    return this.#started;
  }

  /** The tracking granule chosen at start (0 when stopped). */
  get granule(): number {
    return this.#started ? this.#granule : 0;
  }

  /** The ranges actually tracked (after merging). */
  get trackedRanges(): IovaRange[] {
    return this.#ranges.map((r) => ({ iova: BigInt(r.start), length: BigInt(r.end - r.start) }));
  }

  /** DMA_LOGGING_START: core checks, then the driver's; resolves the granule it chose. */
  start(ranges: readonly IovaRange[], pageSize: bigint): bigint {
    validateLoggingStart(ranges, pageSize);
    if (this.#started) fail('EINVAL', 'DMA_LOGGING_START: logging is already started');
    let granule = pageSize < 1n ? 1n : floorPowerOfTwo(pageSize);
    if (granule < this.limits.minGranule) granule = this.limits.minGranule;
    if (granule > this.limits.maxGranule) granule = this.limits.maxGranule;
    const tracked = combineRanges(ranges, this.limits.maxRanges);
    const top = tracked.reduce((m, r) => (r.iova + r.length > m ? r.iova + r.length : m), 0n);
    if (top > BigInt(Number.MAX_SAFE_INTEGER)) {
      fail(
        'EINVAL',
        `DMA_LOGGING_START: IOVA 0x${top.toString(16)} is beyond what the tracker covers (2^53)`,
      );
    }
    this.#ranges = tracked.map((r) => ({ start: Number(r.iova), end: Number(r.iova + r.length) }));
    this.#granule = Number(granule);
    this.#dirty.clear();
    this.#started = true;
    return granule;
  }

  /** DMA_LOGGING_STOP: succeeds when not started. */
  stop(): void {
    this.#started = false;
    this.#ranges = [];
    this.#dirty.clear();
  }

  /** Called for every DMA write the device makes: marks granules inside tracked ranges. */
  recordWrite(iova: number, length: number): void {
    if (!this.#started || length <= 0) return;
    const g = this.#granule;
    for (const r of this.#ranges) {
      const lo = Math.max(iova, r.start);
      const hi = Math.min(iova + length, r.end);
      if (hi <= lo) continue;
      const last = Math.floor((hi - 1) / g);
      for (let k = Math.floor(lo / g); k <= last; k++) this.#dirty.add(k);
    }
  }

  /** Number of dirty granules currently logged (for tests and statistics). */
  get dirtyGranules(): number {
    return this.#dirty.size;
  }

  /**
   * DMA_LOGGING_REPORT: read-and-clear of [iova, iova+length). Every report bit a dirty granule
   * overlaps is set. A granule that sticks out of the window is reported but kept, so the
   * neighbouring window reports it too: reporting twice is harmless, losing it is not.
   */
  report(iova: bigint, length: bigint, pageSize: bigint, bitmap: Uint8Array): void {
    validateLoggingReport(iova, length, pageSize);
    if (!this.#started) fail('EINVAL', 'DMA_LOGGING_REPORT: logging is not started');
    checkReportBitmap(length, pageSize, bitmap);
    if (length === 0n || this.#dirty.size === 0) return;
    const g = BigInt(this.#granule);
    const end = iova + length;
    const firstG = iova / g;
    const lastG = (end - 1n) / g;
    const visit = (k: number): void => {
      const start = BigInt(k) * g;
      setReportBits(bitmap, iova, length, pageSize, start, g);
      if (start >= iova && start + g <= end) this.#dirty.delete(k);
    };
    if (lastG - firstG + 1n <= BigInt(this.#dirty.size)) {
      for (let k = Number(firstG); k <= Number(lastG); k++) if (this.#dirty.has(k)) visit(k);
    } else {
      for (const k of this.#dirty) {
        const big = BigInt(k);
        if (big >= firstG && big <= lastG) visit(k);
      }
    }
  }
}
