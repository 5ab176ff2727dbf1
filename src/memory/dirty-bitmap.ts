/**
 * The migration bitmap of one RAM block (QEMU's `RAMBlock::bmap`): owned by the main thread,
 * filled by syncing the vCPU dirty log into it, consumed by the RAM save handler page by page.
 * A plain (non-shared) word array: only one thread ever touches it, so no atomics.
 */
import {
  bitRange,
  checkPageCount,
  ctz32,
  lastWordMask,
  popcount32,
  wordsForPages,
} from './bitmap-words.ts';

export class DirtyBitmap {
  readonly pages: number;
  readonly words: Int32Array;
  readonly #lastWord: number;
  readonly #lastMask: number;
  #dirty = 0;

  constructor(pages: number) {
    checkPageCount(pages, 'dirty bitmap');
    this.pages = pages;
    this.words = new Int32Array(wordsForPages(pages));
    this.#lastWord = this.words.length - 1;
    this.#lastMask = lastWordMask(pages);
  }

  /** Pages currently marked dirty (kept up to date, O(1)). */
  get dirtyCount(): number {
    return this.#dirty;
  }

  isDirty(page: number): boolean {
    if (page >>> 0 !== page || page >= this.pages) this.#check(page, 1);
    return (this.words[page >>> 5]! & (1 << (page & 31))) !== 0;
  }

  /** Marks pages [start, start+count) dirty; returns how many were clean before. */
  setDirty(start: number, count = 1): number {
    this.#check(start, count);
    const end = start + count;
    let fresh = 0;
    for (let i = start >>> 5; i * 32 < end; i++) {
      const lo = Math.max(start - i * 32, 0);
      const hi = Math.min(end - i * 32, 32);
      fresh += this.#orWord(i, bitRange(lo, hi));
    }
    return fresh;
  }

  /**
   * `migration_bitmap_clear_dirty`: true when the page was dirty, and it is clean afterwards.
   * The RAM handler calls this once per page it sends.
   */
  testAndClear(page: number): boolean {
    if (page >>> 0 !== page || page >= this.pages) this.#check(page, 1);
    const i = page >>> 5;
    const bit = 1 << (page & 31);
    const w = this.words[i]!;
    if ((w & bit) === 0) return false;
    this.words[i] = w & ~bit;
    this.#dirty--;
    return true;
  }

  /**
   * Clears the run of consecutive dirty pages that starts at `start` (at most `max` of them)
   * and returns its length, 0 when `start` is clean: `testAndClear` for a run of pages sent
   * together, a word at a time.
   */
  takeRun(start: number, max: number): number {
    this.#check(start, 0);
    const words = this.words;
    let page = start;
    let left = Math.min(max, this.pages - start);
    while (left > 0) {
      const i = page >>> 5;
      const b = page & 31;
      const w = words[i]!;
      const rest = w >>> b;
      // Set bits from bit b on: all of them when the word is full from there.
      const ones = rest === -1 >>> b ? 32 - b : ctz32(~rest);
      const n = Math.min(ones, left);
      if (n === 0) break;
      words[i] = w & ~bitRange(b, b + n);
      this.#dirty -= n;
      page += n;
      left -= n;
      if (b + n < 32) break;
    }
    return page - start;
  }

  /**
   * The first dirty page at or after `from`, or -1. Skips clean words 32 pages at a time, so a
   * full pass with `p = nextDirty(p + 1)` costs O(words + dirty pages) and allocates nothing.
   */
  nextDirty(from: number): number {
    if (from >>> 0 !== from) this.#check(from, 0);
    if (from >= this.pages) return -1;
    const words = this.words;
    let i = from >>> 5;
    let w = words[i]! & (-1 << (from & 31));
    while (w === 0) {
      if (++i > this.#lastWord) return -1;
      w = words[i]!;
    }
    return i * 32 + ctz32(w);
  }

  /** Clears every bit. */
  clear(): void {
    this.words.fill(0);
    this.#dirty = 0;
  }

  /**
   * ORs `bits` into word `index` (bits past the last page are dropped); returns how many of them
   * were clean. This is how a dirty log is merged in.
   */
  orWord(index: number, bits: number): number {
    if (!(index >= 0 && index <= this.#lastWord)) {
      throw new RangeError(`dirty bitmap: word ${index} outside [0, ${this.#lastWord}]`);
    }
    return this.#orWord(index, index === this.#lastWord ? bits & this.#lastMask : bits);
  }

  #orWord(index: number, bits: number): number {
    const old = this.words[index]!;
    const fresh = popcount32(bits & ~old);
    if (fresh !== 0) {
      this.words[index] = old | bits;
      this.#dirty += fresh;
    }
    return fresh;
  }

  #check(start: number, count: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0) {
      throw new RangeError(`dirty bitmap: page range ${start}+${count} is not a pair of naturals`);
    }
    if (start + count > this.pages) {
      throw new RangeError(
        `dirty bitmap: pages [${start}, ${start + count}) exceed the ${this.pages} pages`,
      );
    }
  }
}
