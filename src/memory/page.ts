/**
 * Target pages: the unit of guest RAM for dirty logging and migration. QEMU's x86 target page
 * is 4 KiB (TARGET_PAGE_BITS = 12); the RAM section of the stream, the vCPU dirty log and the
 * migration bitmap all count in these pages.
 */
export const TARGET_PAGE_BITS = 12;
export const TARGET_PAGE_SIZE = 1 << TARGET_PAGE_BITS;
/** 32-bit words in one target page. */
export const TARGET_PAGE_WORDS = TARGET_PAGE_SIZE >>> 2;

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** True when `n` (bytes, a safe integer) is a whole number of target pages. */
export function isPageAligned(n: number): boolean {
  return Number.isSafeInteger(n) && n % TARGET_PAGE_SIZE === 0;
}

/** `0x1_0000_0000` style address formatting for error messages. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
