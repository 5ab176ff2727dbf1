/**
 * What one guest write does to a page. A data write stores a stamp (a per-writer sequence
 * number, never 0) and the writer's salt in the first 8 bytes, then a few PRNG words at random
 * places: the page content really changes on every write (a lost dirty bit shows up in a RAM
 * digest), the page is never all-zero, and the cost stays at a handful of stores so that high
 * dirty rates are reachable. A zero write clears the whole page, making it a zero page for the
 * RAM handler. Neither touches the dirty log: the caller logs the page afterwards.
 */
import { TARGET_PAGE_WORDS } from '../memory/page.ts';
import type { Prng } from './prng.ts';

/** PRNG words scattered into a page by a data write. */
export const SCATTERED_WORDS = 6;

export function writeDataPage(
  words: Int32Array,
  at: number,
  stamp: number,
  salt: number,
  prng: Prng,
): void {
  words[at] = stamp;
  words[at + 1] = salt;
  for (let k = 0; k < SCATTERED_WORDS; k++) {
    words[at + 2 + prng.below(TARGET_PAGE_WORDS - 2)] = prng.nextU32();
  }
}

export function writeZeroPage(words: Int32Array, at: number): void {
  words.fill(0, at, at + TARGET_PAGE_WORDS);
}

/** Stamps run 1, 2, ... 2^32-1, 1, ... (0 is skipped so a data page is never zero). */
export function nextStamp(stamp: number): number {
  return stamp === 0xffffffff ? 1 : stamp + 1;
}
