/**
 * The vCPU dirty log of one RAM block, as KVM keeps one per memory slot: a bitmap in shared
 * memory where vCPU threads set a bit for every page they write, and which the main thread
 * collects (read-and-clear) into the migration bitmap. Device DMA never lands here
 * (qemu-migration.md §3.5): it is tracked by the device or the IOMMU instead.
 */
import { checkPageCount, popcount32, wordsForPages } from './bitmap-words.ts';
import type { DirtyBitmap } from './dirty-bitmap.ts';

/**
 * Records a write to `page` in the log `words`. Called by the writer *after* its stores to the
 * page: the atomic read-modify-write orders them before the bit, so whoever clears the bit and
 * then reads the page sees the new bytes, or the bit is still set for the next sync. (Testing
 * the bit with a plain load first would let the data store slip past a concurrent clear.)
 */
export function markPageDirty(words: Int32Array, page: number): void {
  Atomics.or(words, page >>> 5, 1 << (page & 31));
}

export class DirtyLog {
  readonly pages: number;
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;

  /** A new empty log, or a view of an existing one (another thread's `buffer`). */
  constructor(pages: number, buffer?: SharedArrayBuffer) {
    checkPageCount(pages, 'dirty log');
    const bytes = wordsForPages(pages) * 4;
    if (buffer !== undefined && buffer.byteLength !== bytes) {
      throw new RangeError(
        `dirty log: shared buffer of ${buffer.byteLength} bytes, ${pages} pages need ${bytes}`,
      );
    }
    this.pages = pages;
    this.buffer = buffer ?? new SharedArrayBuffer(bytes);
    this.words = new Int32Array(this.buffer);
  }

  /** Marks one page dirty, as a vCPU write does. */
  mark(page: number): void {
    if (page >>> 0 !== page || page >= this.pages) {
      throw new RangeError(`dirty log: page ${page} outside [0, ${this.pages})`);
    }
    markPageDirty(this.words, page);
  }

  /**
   * Moves every logged bit into `bitmap` (one atomic exchange per non-zero word, so no bit set
   * concurrently is lost: it lands either in this sync or the next). Returns the pages that
   * were clean in `bitmap` and are dirty now, QEMU's `num_dirty_pages_period` increment.
   */
  syncInto(bitmap: DirtyBitmap): number {
    if (bitmap.pages !== this.pages) {
      throw new RangeError(`dirty log of ${this.pages} pages synced into ${bitmap.pages}`);
    }
    const log = this.words;
    let fresh = 0;
    for (let i = 0; i < log.length; i++) {
      // A plain read to skip clean words cheaply; a bit set right after is taken next time.
      if (log[i] === 0) continue;
      const bits = Atomics.exchange(log, i, 0);
      if (bits !== 0) fresh += bitmap.orWord(i, bits);
    }
    return fresh;
  }

  /** Pages logged and not yet collected (a snapshot; vCPUs may be adding more). */
  pendingCount(): number {
    let n = 0;
    for (let i = 0; i < this.words.length; i++) n += popcount32(Atomics.load(this.words, i));
    return n;
  }

  /** Drops everything logged so far; returns how many pages were dropped. */
  clear(): number {
    let n = 0;
    for (let i = 0; i < this.words.length; i++) {
      if (this.words[i] !== 0) n += popcount32(Atomics.exchange(this.words, i, 0));
    }
    return n;
  }
}
