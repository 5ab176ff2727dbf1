/**
 * Word arithmetic shared by the page bitmaps. Page `p` is bit `p & 31` of 32-bit word `p >>> 5`,
 * the same order as the kernel's little-endian `unsigned long` bitmaps (KVM's dirty log and the
 * VFIO DMA-logging report), so a byte or u64 bitmap from either can be OR-ed in word by word.
 */

/** Number of 32-bit words holding `pages` bits. */
export function wordsForPages(pages: number): number {
  return Math.ceil(pages / 32);
}

/** Set bits in a 32-bit word (SWAR, no table, no allocation). */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero word. */
export function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Bits [from, to) of a word, 0 <= from < to <= 32, as a signed 32-bit mask. */
export function bitRange(from: number, to: number): number {
  const high = to === 32 ? -1 : (1 << to) - 1;
  return high & (-1 << from);
}

/** The mask of valid bits in the last word of a bitmap of `pages` bits. */
export function lastWordMask(pages: number): number {
  const rem = pages & 31;
  return rem === 0 ? -1 : (1 << rem) - 1;
}

/** Checks that `pages` can be a bitmap size: a positive integer below 2^31. */
export function checkPageCount(pages: number, what: string): void {
  if (!Number.isInteger(pages) || pages <= 0 || pages >= 2 ** 31) {
    throw new RangeError(`${what}: page count ${pages} is not an integer in [1, 2^31)`);
  }
}
