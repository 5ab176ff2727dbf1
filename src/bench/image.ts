/**
 * Guest RAM images for the benchmarks: a raw file that both our VM (config `loader`) and QEMU
 * (`-device loader,file=…,force-raw=on`) copy into guest RAM, so both migrate the same bytes.
 *
 *   random       every byte random: no zero page, nothing compressible
 *   mostly-zero  one page in 64 random, the others zero (sent as ZERO records)
 */
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';

export const RAM_PATTERNS = ['random', 'mostly-zero'] as const;
export type RamPattern = (typeof RAM_PATTERNS)[number];

const PAGE = 4096;
/** mostly-zero: one data page per this many pages. */
export const MOSTLY_ZERO_STRIDE = 64;
/** Bytes generated and written at a time. */
const PIECE = 16 << 20;

/** Writes an image of `size` bytes (a multiple of 1 MiB) and returns its SHA-256 (hex). */
export function writeRamImage(path: string, size: number, pattern: RamPattern): string {
  if (!Number.isSafeInteger(size) || size <= 0 || size % (1 << 20) !== 0) {
    throw new RangeError(`image size ${size} is not a positive multiple of 1 MiB`);
  }
  const piece = Buffer.alloc(PIECE);
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < size; at += PIECE) {
      const n = Math.min(PIECE, size - at);
      const bytes = piece.subarray(0, n);
      if (pattern === 'random') {
        randomFillSync(bytes);
      } else {
        bytes.fill(0);
        for (let p = 0; p < n; p += PAGE * MOSTLY_ZERO_STRIDE) randomFillSync(bytes, p, PAGE);
      }
      writeSync(fd, bytes, 0, n, at);
      hash.update(bytes);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
