/**
 * A RAM block as QEMU's `RAMBlock`: a named, page-aligned range of guest RAM (`idstr`,
 * `used_length`) with its vCPU dirty log and migration bitmap.
 *
 * The bytes live in SharedArrayBuffers so vCPU worker threads write them directly. A typed
 * array cannot exceed 4 GiB on Node 20, so a block is a list of segments (1 GiB by default);
 * a page never straddles two segments, and every page access is a shift and a mask into a view
 * cached per segment. Linux commits a segment's pages on first touch, so a large idle guest
 * costs address space, not resident memory.
 */
import { createHash } from 'node:crypto';
import { DirtyBitmap } from './dirty-bitmap.ts';
import { DirtyLog } from './dirty-log.ts';
import { GiB, TARGET_PAGE_BITS, TARGET_PAGE_SIZE, TARGET_PAGE_WORDS, hex } from './page.ts';

export const DEFAULT_SEGMENT_SIZE = GiB;
/** Segment offsets stay below 2^31, so page offsets are plain int32 arithmetic. */
export const MAX_SEGMENT_SIZE = GiB;
/** QEMU's idstr is a NUL-terminated char[256]; the RAM section sends its length in one byte. */
export const MAX_IDSTR_LENGTH = 255;

/** The shared memory behind a block: its segments and its dirty log. */
export interface RamBlockBacking {
  readonly segments: readonly SharedArrayBuffer[];
  readonly dirtyLog: SharedArrayBuffer;
}

export interface RamBlockOptions {
  /** Bytes per backing segment: a power of two from one page to 1 GiB. */
  segmentSize?: number;
  /** Attach to existing shared memory (another thread's block) instead of allocating. */
  backing?: RamBlockBacking;
}

/** What another thread needs to attach to the same block (structured-clone friendly). */
export interface SharedRamBlock extends RamBlockBacking {
  readonly idstr: string;
  readonly usedLength: number;
  readonly segmentSize: number;
}

/** Zero bytes compared against, in runs of up to this many pages. */
const ZERO_RUN_PAGES = 32;
const ZERO_RUN = Buffer.alloc(ZERO_RUN_PAGES * TARGET_PAGE_SIZE);

export class RamBlock {
  readonly idstr: string;
  /** Bytes, a multiple of TARGET_PAGE_SIZE. */
  readonly usedLength: number;
  readonly pages: number;
  readonly segmentSize: number;
  readonly segments: readonly SharedArrayBuffer[];
  /** Written by vCPUs (shared); collected into `bitmap` by `syncDirtyBitmap`. */
  readonly dirtyLog: DirtyLog;
  readonly #bytes: readonly Buffer[];
  readonly #words: readonly Int32Array[];
  /** log2 of pages per segment, and the mask of a page's index inside its segment. */
  readonly #segShift: number;
  readonly #segMask: number;
  #bitmap: DirtyBitmap | undefined;
  /** Allocated here and not written since, as far as this object can tell (see `pristine`). */
  #untouched: boolean;

  constructor(idstr: string, usedLength: number, options: RamBlockOptions = {}) {
    const segmentSize = options.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    checkBlockShape(idstr, usedLength, segmentSize);
    const pages = usedLength / TARGET_PAGE_SIZE;
    const segments = options.backing?.segments ?? allocateSegments(usedLength, segmentSize);
    checkSegments(idstr, usedLength, segmentSize, segments);
    this.idstr = idstr;
    this.usedLength = usedLength;
    this.pages = pages;
    this.segmentSize = segmentSize;
    this.segments = segments;
    this.dirtyLog = new DirtyLog(pages, options.backing?.dirtyLog);
    this.#bytes = segments.map((s) => Buffer.from(s));
    this.#words = segments.map((s) => new Int32Array(s));
    this.#segShift = Math.log2(segmentSize) - TARGET_PAGE_BITS;
    this.#segMask = (1 << this.#segShift) - 1;
    this.#untouched = options.backing === undefined;
  }

  /** The same block seen from another thread: no copy, every byte and log bit is shared. */
  static attach(shared: SharedRamBlock): RamBlock {
    return new RamBlock(shared.idstr, shared.usedLength, {
      segmentSize: shared.segmentSize,
      backing: shared,
    });
  }

  /** The descriptor to post to a worker thread for `RamBlock.attach`. */
  shared(): SharedRamBlock {
    return {
      idstr: this.idstr,
      usedLength: this.usedLength,
      segmentSize: this.segmentSize,
      segments: this.segments,
      dirtyLog: this.dirtyLog.buffer,
    };
  }

  /** The migration bitmap (QEMU's `bmap`), created on first use by the main thread only. */
  get bitmap(): DirtyBitmap {
    return (this.#bitmap ??= new DirtyBitmap(this.pages));
  }

  /**
   * True while the block surely still holds the zeros it was allocated with: it was allocated
   * here (not attached to another thread's memory), nothing was written through this object
   * (its write methods, or the raw views `segmentBytes`, `segmentWords` and `pageView`), and
   * no vCPU logged a write (vCPU threads log every page they write). Writes straight into
   * `segments` are not seen. An incoming migration uses it to leave zero pages alone that a
   * fresh destination already holds, as QEMU's multifd receiver does.
   */
  get pristine(): boolean {
    return this.#untouched && this.#bitmap === undefined && this.dirtyLog.pendingCount() === 0;
  }

  /**
   * `ramblock_sync_dirty_bitmap`: moves the vCPU dirty log into the migration bitmap and
   * returns the number of pages that became dirty there.
   */
  syncDirtyBitmap(): number {
    return this.dirtyLog.syncInto(this.bitmap);
  }

  // --- page access: O(1), no allocation unless noted ------------------------------------

  /**
   * The cached byte view of the segment holding `page` (use with `offsetInSegment`), to write
   * pages in place. Reading goes through `copyPagesTo`.
   */
  segmentBytes(page: number): Uint8Array {
    this.#untouched = false;
    return this.#bytes[this.#segmentOf(page)]!;
  }

  /** The cached int32 view of the segment holding `page` (use with `wordOffsetInSegment`). */
  segmentWords(page: number): Int32Array {
    this.#untouched = false;
    return this.#words[this.#segmentOf(page)]!;
  }

  /** Pages from `page` to the end of its segment: a run of pages never crosses one. */
  pagesToSegmentEnd(page: number): number {
    this.#segmentOf(page);
    return Math.min(this.#segMask + 1 - (page & this.#segMask), this.pages - page);
  }

  /** Byte offset of `page` inside its segment. */
  offsetInSegment(page: number): number {
    return (page & this.#segMask) << TARGET_PAGE_BITS;
  }

  /** Int32 index of the first word of `page` inside its segment. */
  wordOffsetInSegment(page: number): number {
    return (page & this.#segMask) * TARGET_PAGE_WORDS;
  }

  /** A view of one page (allocates the view object; hot paths use `copyPagesTo`). */
  pageView(page: number): Uint8Array {
    this.#untouched = false;
    const off = this.offsetInSegment(page);
    return this.#bytes[this.#segmentOf(page)]!.subarray(off, off + TARGET_PAGE_SIZE);
  }

  /** Copies one page into `dst` at `dstOffset` (native memcpy). */
  copyPageTo(page: number, dst: Uint8Array, dstOffset = 0): void {
    this.copyPagesTo(page, 1, dst, dstOffset);
  }

  /**
   * Copies `count` pages from `page` (all in one segment, see `pagesToSegmentEnd`) into `dst`
   * at `dstOffset`, with one native copy. Node's Buffer#copy makes a view object for a copy
   * that starts inside its source, so one call per run of pages rather than per page keeps the
   * RAM save path free of allocation per page. The copy goes word by word (shared memory is
   * copied with relaxed atomics) when `dst` is 8-byte aligned at `dstOffset`, byte by byte
   * otherwise, several times slower.
   */
  copyPagesTo(page: number, count: number, dst: Uint8Array, dstOffset: number): void {
    const bytes = count * TARGET_PAGE_SIZE;
    this.#checkRun(page, count);
    if (!(dstOffset >= 0 && dstOffset + bytes <= dst.length)) {
      throw new RangeError(
        `${this.idstr}: no room for ${count === 1 ? 'a page' : `${count} pages`} at offset ` +
          `${dstOffset} of a ${dst.length}-byte buffer`,
      );
    }
    const off = this.offsetInSegment(page);
    this.#bytes[this.#segmentOf(page)]!.copy(dst, dstOffset, off, off + bytes);
  }

  /** Overwrites one page with `src[srcOffset .. srcOffset + TARGET_PAGE_SIZE)`. */
  writePage(page: number, src: Uint8Array, srcOffset = 0): void {
    this.#untouched = false;
    if (!(srcOffset >= 0 && srcOffset + TARGET_PAGE_SIZE <= src.length)) {
      throw new RangeError(
        `${this.idstr}: no whole page at offset ${srcOffset} of a ${src.length}-byte buffer`,
      );
    }
    const seg = this.#bytes[this.#segmentOf(page)]!;
    const off = this.offsetInSegment(page);
    if (Buffer.isBuffer(src)) {
      src.copy(seg, off, srcOffset, srcOffset + TARGET_PAGE_SIZE);
    } else if (srcOffset === 0 && src.length === TARGET_PAGE_SIZE) {
      seg.set(src, off);
    } else {
      seg.set(src.subarray(srcOffset, srcOffset + TARGET_PAGE_SIZE), off);
    }
  }

  /**
   * True when every byte of the page is zero (QEMU's `buffer_is_zero`). The first 8 bytes are
   * tested inline, since a written page almost always differs there; the rest is a native
   * memcmp against a zero page, several times faster than a JS word loop.
   */
  isZeroPage(page: number): boolean {
    return this.isZeroRange(page, 1);
  }

  /**
   * True when the `count` pages from `page` (in one segment) are all zero: one native compare
   * for the run, after a look at its first 8 bytes.
   */
  isZeroRange(page: number, count: number): boolean {
    const seg = this.#checkRun(page, count);
    const w = (page & this.#segMask) * TARGET_PAGE_WORDS;
    const words = this.#words[seg]!;
    if ((words[w]! | words[w + 1]!) !== 0) return false;
    const off = w * 4;
    const bytes = this.#bytes[seg]!;
    for (let done = 0; done < count; done += ZERO_RUN_PAGES) {
      const n = Math.min(count - done, ZERO_RUN_PAGES) * TARGET_PAGE_SIZE;
      const at = off + done * TARGET_PAGE_SIZE;
      if (bytes.compare(ZERO_RUN, 0, n, at, at + n) !== 0) return false;
    }
    return true;
  }

  /**
   * Backs every page now (QEMU's -mem-prealloc): one locked write per page of the value it
   * holds, so no byte changes and the block stays `pristine` if it was. (A read first would map
   * the shared zero page, and the write after it would fault again to copy it.)
   */
  prealloc(): void {
    for (let page = 0; page < this.pages; page++) {
      Atomics.compareExchange(
        this.#words[page >>> this.#segShift]!,
        this.wordOffsetInSegment(page),
        0,
        0,
      );
    }
  }

  // --- bulk access by byte offset, across segments -------------------------------------

  /** Copies `dst.length` bytes from `offset` into `dst`; returns `dst`. */
  readInto(offset: number, dst: Uint8Array): Uint8Array {
    this.#checkRange(offset, dst.length);
    this.#eachPiece(offset, dst.length, (seg, at, pos, n) => {
      seg.copy(dst, pos, at, at + n);
    });
    return dst;
  }

  /** A copy of `length` bytes from `offset`. */
  read(offset: number, length: number): Uint8Array {
    this.#checkRange(offset, length);
    return this.readInto(offset, new Uint8Array(length));
  }

  /** Writes `src` at `offset`. Sets no dirty bit: a vCPU write logs itself, see guest/. */
  write(offset: number, src: Uint8Array): void {
    this.#checkRange(offset, src.length);
    this.#untouched = false;
    this.#eachPiece(offset, src.length, (seg, at, pos, n) => {
      seg.set(src.subarray(pos, pos + n), at);
    });
  }

  /** Sets `length` bytes from `offset` to `value`. */
  fill(offset: number, length: number, value = 0): void {
    this.#checkRange(offset, length);
    this.#untouched = false;
    this.#eachPiece(offset, length, (seg, at, _pos, n) => {
      seg.fill(value, at, at + n);
    });
  }

  /** SHA-256 of the block's bytes, lowercase hex. */
  digest(): string {
    const hash = createHash('sha256');
    for (const seg of this.#bytes) hash.update(seg);
    return hash.digest('hex');
  }

  /** The segment of a run of `count` pages from `page`, which must stay inside it. */
  #checkRun(page: number, count: number): number {
    if (!(count >= 1 && count <= this.pagesToSegmentEnd(page))) {
      throw new RangeError(`${this.idstr}: ${count} pages from page ${page} leave its segment`);
    }
    return page >>> this.#segShift;
  }

  #segmentOf(page: number): number {
    if (page >>> 0 !== page || page >= this.pages) {
      throw new RangeError(`${this.idstr}: page ${page} outside [0, ${this.pages})`);
    }
    return page >>> this.#segShift;
  }

  #checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.usedLength
    ) {
      throw new RangeError(
        `${this.idstr}: bytes [${hex(offset)}, +${length}) outside the block (${hex(this.usedLength)} bytes)`,
      );
    }
  }

  /** Calls `fn(segment, offsetInSegment, positionInRange, bytes)` for each segment piece. */
  #eachPiece(
    offset: number,
    length: number,
    fn: (seg: Buffer, at: number, pos: number, n: number) => void,
  ): void {
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const seg = Math.floor(abs / this.segmentSize);
      const at = abs - seg * this.segmentSize;
      const n = Math.min(length - pos, this.segmentSize - at);
      fn(this.#bytes[seg]!, at, pos, n);
      pos += n;
    }
  }
}

function checkBlockShape(idstr: string, usedLength: number, segmentSize: number): void {
  if (idstr.length === 0 || Buffer.byteLength(idstr) > MAX_IDSTR_LENGTH || idstr.includes('\0')) {
    throw new RangeError(
      `RAM block idstr ${JSON.stringify(idstr)} must be 1..${MAX_IDSTR_LENGTH} bytes without NUL`,
    );
  }
  if (!Number.isSafeInteger(usedLength) || usedLength <= 0 || usedLength % TARGET_PAGE_SIZE) {
    throw new RangeError(
      `RAM block ${idstr}: used length ${usedLength} is not a positive multiple of ${TARGET_PAGE_SIZE}`,
    );
  }
  if (usedLength / TARGET_PAGE_SIZE >= 2 ** 31) {
    throw new RangeError(`RAM block ${idstr}: ${hex(usedLength)} bytes is 2^31 pages or more`);
  }
  const isPow2 = Number.isInteger(Math.log2(segmentSize));
  if (!isPow2 || segmentSize < TARGET_PAGE_SIZE || segmentSize > MAX_SEGMENT_SIZE) {
    throw new RangeError(
      `RAM block ${idstr}: segment size ${segmentSize} is not a power of two in [${TARGET_PAGE_SIZE}, ${MAX_SEGMENT_SIZE}]`,
    );
  }
}

function allocateSegments(usedLength: number, segmentSize: number): SharedArrayBuffer[] {
  const segments: SharedArrayBuffer[] = [];
  for (let at = 0; at < usedLength; at += segmentSize) {
    segments.push(new SharedArrayBuffer(Math.min(segmentSize, usedLength - at)));
  }
  return segments;
}

function checkSegments(
  idstr: string,
  usedLength: number,
  segmentSize: number,
  segments: readonly SharedArrayBuffer[],
): void {
  const expected = Math.ceil(usedLength / segmentSize);
  if (segments.length !== expected) {
    throw new RangeError(`RAM block ${idstr}: ${segments.length} segments, expected ${expected}`);
  }
  segments.forEach((seg, i) => {
    const want = Math.min(segmentSize, usedLength - i * segmentSize);
    if (!(seg instanceof SharedArrayBuffer) || seg.byteLength !== want) {
      throw new RangeError(
        `RAM block ${idstr}: segment ${i} is not a ${want}-byte SharedArrayBuffer`,
      );
    }
  });
}
