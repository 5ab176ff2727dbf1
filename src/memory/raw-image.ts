/**
 * A raw image file copied into guest RAM at a guest-physical address, as QEMU's
 * `-device loader,file=FILE,addr=ADDR,force-raw=on` does before the guest starts. The file is
 * read straight into the RAM segments in bounded pieces: no buffer of the image's size is
 * allocated, so loading 1 GiB costs 1 GiB of guest RAM and nothing more.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { GuestMemory } from './guest-memory.ts';
import { TARGET_PAGE_SIZE, hex } from './page.ts';

/** Bytes read per read(2): large enough to be cheap, small enough to stay in one segment. */
const READ_PIECE = 16 << 20;

/** Copies the whole of `path` into guest RAM at `gpa`; returns the number of bytes loaded. */
export function loadRawImage(memory: GuestMemory, path: string, gpa: number): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new Error(`loader ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  try {
    const size = fstatSync(fd).size;
    if (!Number.isSafeInteger(gpa) || gpa < 0) {
      throw new RangeError(`loader ${path}: address ${gpa} is not a natural number`);
    }
    let at = gpa;
    const end = gpa + size;
    while (at < end) {
      const m = memory.findMapping(at);
      if (m === undefined) {
        throw new RangeError(
          `loader ${path} (${size} bytes at ${hex(gpa)}): ${hex(at)} is not guest RAM`,
        );
      }
      const offset = m.offset + (at - m.gpa);
      const page = Math.floor(offset / TARGET_PAGE_SIZE);
      const inSegment = m.block.offsetInSegment(page) + (offset % TARGET_PAGE_SIZE);
      const segment = m.block.segmentBytes(page);
      const n = Math.min(end - at, m.gpa + m.length - at, segment.length - inSegment, READ_PIECE);
      const got = readSync(fd, segment, inSegment, n, at - gpa);
      if (got !== n) {
        throw new Error(`loader ${path}: read ${got} of ${n} bytes at file offset ${at - gpa}`);
      }
      at += n;
    }
    return size;
  } finally {
    closeSync(fd);
  }
}
