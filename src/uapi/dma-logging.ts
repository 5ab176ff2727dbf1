/**
 * Core-side validation of DMA dirty logging (features 6/7/8, vfio-uapi.md §7), in the order
 * `vfio_main.c` applies it, and the report bitmap layout of `iova_bitmap.c`. Addresses are u64,
 * so everything here is bigint with explicit 64-bit wrap-around.
 */
import { fail } from './errno.ts';

/** `LOG_MAX_RANGES = PAGE_SIZE / sizeof(struct vfio_device_feature_dma_logging_range)`. */
export const HOST_PAGE_SIZE = 4096;
export const LOG_MAX_RANGES = HOST_PAGE_SIZE / 16;
/** REPORT refuses page sizes below 4 KiB (`SZ_4K`). */
export const LOG_MIN_REPORT_PAGE_SIZE = 4096n;

export interface IovaRange {
  iova: bigint;
  length: bigint;
}

const U64_MASK = (1n << 64n) - 1n;

const isAligned = (x: bigint, a: bigint): boolean => (x & ((a - 1n) & U64_MASK)) === 0n;

export const isPowerOfTwo = (x: bigint): boolean => x > 0n && (x & (x - 1n)) === 0n;

/** `check_add_overflow(iova, length)` on u64. */
const addOverflows = (iova: bigint, length: bigint): boolean => iova + length > U64_MASK;

/**
 * DMA_LOGGING_START checks of the core: range count, then per range alignment, overflow and
 * overlap with an earlier range (closed intervals; adjacent ranges are fine).
 */
export function validateLoggingStart(ranges: readonly IovaRange[], pageSize: bigint): void {
  if (ranges.length === 0) fail('EINVAL', 'DMA_LOGGING_START: num_ranges is 0');
  if (ranges.length > LOG_MAX_RANGES) {
    fail('E2BIG', `DMA_LOGGING_START: ${ranges.length} ranges, at most ${LOG_MAX_RANGES}`);
  }
  const seen: { start: bigint; last: bigint }[] = [];
  ranges.forEach((r, i) => {
    if (r.iova < 0n || r.iova > U64_MASK || r.length < 0n || r.length > U64_MASK) {
      fail('EFAULT', `DMA_LOGGING_START: range ${i} is not a pair of u64 values`);
    }
    if (!isAligned(r.iova, pageSize) || !isAligned(r.length, pageSize)) {
      fail('EINVAL', `DMA_LOGGING_START: range ${i} is not aligned to page_size ${pageSize}`);
    }
    if (addOverflows(r.iova, r.length)) {
      fail('EOVERFLOW', `DMA_LOGGING_START: range ${i} iova + length overflows 64 bits`);
    }
    const node = { start: r.iova, last: (r.iova + r.length - 1n) & U64_MASK };
    const j = seen.findIndex((o) => o.start <= node.last && node.start <= o.last);
    if (j >= 0) fail('EINVAL', `DMA_LOGGING_START: range ${i} overlaps range ${j}`);
    seen.push(node);
  });
}

/** DMA_LOGGING_REPORT checks of the core, before the driver is asked. */
export function validateLoggingReport(iova: bigint, length: bigint, pageSize: bigint): void {
  if (pageSize < LOG_MIN_REPORT_PAGE_SIZE || !isPowerOfTwo(pageSize)) {
    fail('EINVAL', `DMA_LOGGING_REPORT: page_size ${pageSize} is below 4096 or not a power of two`);
  }
  if (iova < 0n || length < 0n || iova > U64_MASK || length > U64_MASK) {
    fail('EFAULT', 'DMA_LOGGING_REPORT: iova/length are not u64 values');
  }
  if (addOverflows(iova, length)) fail('EOVERFLOW', 'DMA_LOGGING_REPORT: iova + length overflows');
}

/** Bytes of bitmap a REPORT of `length` at `pageSize` needs: whole little-endian u64 words. */
export function reportBitmapBytes(length: bigint, pageSize: bigint): number {
  const pages = (length + pageSize - 1n) / pageSize;
  return Number((pages + 63n) / 64n) * 8;
}

/**
 * Sets the bits of a REPORT bitmap covering the dirty granule [start, start+size) clipped to
 * the report window. Bit k (page iova + k*pageSize) is bit k%64 of LE u64 word k/64, i.e.
 * bit k%8 of byte k/8. Only sets bits: the caller pre-zeroes (vfio-uapi.md §7).
 */
export function setReportBits(
  bitmap: Uint8Array,
  reportIova: bigint,
  reportLength: bigint,
  pageSize: bigint,
  start: bigint,
  size: bigint,
): void {
  const lo = start > reportIova ? start : reportIova;
  const end = reportIova + reportLength;
  const hi = start + size < end ? start + size : end;
  if (hi <= lo) return;
  const first = Number((lo - reportIova) / pageSize);
  const last = Number((hi - 1n - reportIova) / pageSize);
  for (let k = first; k <= last; k++) bitmap[k >>> 3]! |= 1 << (k & 7);
}

export function testReportBit(bitmap: Uint8Array, k: number): boolean {
  return ((bitmap[k >>> 3] ?? 0) & (1 << (k & 7))) !== 0;
}
