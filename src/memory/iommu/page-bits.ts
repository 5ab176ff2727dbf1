/**
 * The dirty bitmaps the IOMMU hands out, laid out as the kernel's (vfio-uapi.md §7, and type1's
 * VFIO_IOMMU_DIRTY_PAGES): bit k describes the page `iova + k × page`, bit k % 64 of the
 * little-endian u64 word k / 64, i.e. bit k % 8 of byte k / 8.
 */

/** Bytes of a bitmap covering `pages` pages: whole u64 words. */
export function pageBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Sets bits [first, first + count). */
export function setPageBits(bitmap: Uint8Array, first: number, count: number): void {
  let k = first;
  const end = first + count;
  while (k < end && (k & 7) !== 0) {
    bitmap[k >>> 3]! |= 1 << (k & 7);
    k++;
  }
  const wholeEnd = end - (end & 7);
  if (k < wholeEnd) {
    bitmap.fill(0xff, k >>> 3, wholeEnd >>> 3);
    k = wholeEnd;
  }
  for (; k < end; k++) bitmap[k >>> 3]! |= 1 << (k & 7);
}

export function testPageBit(bitmap: Uint8Array, k: number): boolean {
  return ((bitmap[k >>> 3] ?? 0) & (1 << (k & 7))) !== 0;
}

/** Number of bits set among the first `pages`. */
export function countPageBits(bitmap: Uint8Array, pages: number): number {
  let n = 0;
  for (let k = 0; k < pages; k++) if (testPageBit(bitmap, k)) n++;
  return n;
}
