/**
 * The load side of QEMU's RAM migration (`ram_load_precopy`): the MEM_SIZE list must name the
 * local blocks with their used lengths, ZERO records fill a page, PAGE records land in guest
 * RAM, CONTINUE reuses the last block, EOS ends the section.
 *
 * Pages land in runs where they can: when the head chunk of a socket holds several PAGE
 * records of consecutive pages, their headers are parsed in place, the pages are moved
 * together (`copyWithin`, a plain memmove over bytes already consumed) to an 8-byte aligned
 * spot, and one native copy puts the run in guest RAM — word by word, as copies into shared
 * memory are fast only when aligned, and a view object per run rather than per page (Node's
 * Buffer#copy makes one per call). Anything else goes one record at a time, a page through
 * an aligned scratch page.
 *
 * A ZERO record writes only when the page may hold something else. A block that was pristine
 * when the load began (a fresh destination, see RamBlock.pristine) holds zeros wherever this
 * load has not written yet, so a zero page there is left alone without reading it — as
 * QEMU's multifd receiver does with its received bitmap — which spares a fresh destination a
 * page fault per zero page. Elsewhere the page is read and zeroed when it is not zero.
 *
 * A prefault thread (guest/prefault.ts) takes the first-touch page faults ahead of the loader
 * while the stream is dense with pages a pristine block receives for the first time.
 */
import { RamPrefaulter } from '../../guest/prefault.ts';
import { DirtyBitmap } from '../../memory/dirty-bitmap.ts';
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { RamBlock } from '../../memory/ram-block.ts';
import type { QEMUFileReader } from '../stream/index.ts';
import {
  RAM_PAGE_HEADER_BYTES,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RAM_SECTION_VERSION_ID,
  RamRecordDecoder,
} from './format.ts';

/** Records between two reports to the prefaulter. */
const PREFAULT_STEP = 256;
/** Of those, at least this many pages (not zero pages) make the stream dense. */
const PREFAULT_DENSE = PREFAULT_STEP - PREFAULT_STEP / 8;

const TWO_POW_32 = 0x100000000;
const CONTINUE_PAGE = RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE;

export class RamLoadState {
  readonly #memory: GuestMemory;
  readonly #prefault: RamPrefaulter;
  #dec = new RamRecordDecoder();
  /** Not from Buffer's pool: its own, aligned, memory. */
  readonly #scratch = Buffer.alloc(this.#dec.pageSize);
  /** The block of the last record, by the decoder's (reused) name string. */
  #lastName: string | null = null;
  #lastBlock: RamBlock | null = null;
  #lastBlockIndex = 0;
  /**
   * Per block: the pages this load wrote something other than zeros to, for blocks that were
   * pristine when it began (akin to QEMU's `receivedmap`); null where nothing is known of the
   * block's content.
   */
  #received: (DirtyBitmap | null)[] = [];
  #lastReceived: DirtyBitmap | null = null;
  /** Records, and pages among them, since the last report to the prefaulter. */
  #records = 0;
  #pages = 0;

  constructor(memory: GuestMemory) {
    this.#memory = memory;
    this.#prefault = new RamPrefaulter(memory);
  }

  /** A new incoming migration: forget the last stream's blocks. */
  setup(): void {
    this.#dec = new RamRecordDecoder();
    this.#lastName = null;
    this.#lastBlock = null;
    this.#lastReceived = null;
    this.#received = this.#memory.blocks.map((b) => (b.pristine ? new DirtyBitmap(b.pages) : null));
    this.#records = 0;
    this.#pages = 0;
  }

  /** The load is over: the prefault thread ends (without waiting for it). */
  cleanup(): void {
    this.#prefault.stop();
  }

  /** One section's records, up to EOS. */
  async load(f: QEMUFileReader, versionId: number): Promise<void> {
    if (versionId !== RAM_SECTION_VERSION_ID) {
      throw new Error(`ram version ${versionId} is not supported (only ${RAM_SECTION_VERSION_ID})`);
    }
    const dec = this.#dec;
    const pageSize = dec.pageSize;
    for (;;) {
      // The synchronous fast path first: no promise per record while bytes are buffered.
      let kind = dec.tryReadRecord(f);
      kind ??= await dec.readRecord(f);
      switch (kind) {
        case RAM_SAVE_FLAG_PAGE: {
          const block = this.#blockOf(dec.block, dec.offset);
          const page = dec.offset / pageSize;
          let n = this.#landRun(f, block, page);
          if (n === 0) {
            // Through an aligned page: V8 copies into shared memory word by word only when
            // both sides are equally aligned, and byte by byte it is 3-4 times slower.
            const scratch = this.#scratch;
            if (!f.tryReadIntoAt(scratch, 0, pageSize)) {
              await f.readIntoAt(scratch, 0, pageSize, 'ram page');
            }
            scratch.copy(block.segmentBytes(page), block.offsetInSegment(page), 0, pageSize);
            n = 1;
          }
          // Only pages written for the first time fault: those are what the prefaulter is for.
          const fresh = this.#lastReceived?.setDirty(page, n) ?? 0;
          this.#progress(page + n, n, fresh);
          break;
        }
        case RAM_SAVE_FLAG_ZERO: {
          const block = this.#blockOf(dec.block, dec.offset);
          const page = dec.offset / pageSize;
          const received = this.#lastReceived;
          if (dec.fill !== 0) {
            this.#fillPage(block, page, dec.fill);
            received?.setDirty(page);
          } else if (received === null || received.isDirty(page)) {
            if (!block.isZeroPage(page)) this.#fillPage(block, page, 0);
          }
          // Else the page was never written by this load, in a block that was all zeros: it
          // still is, and stays untouched (not even read: reading maps it).

          this.#progress(page + 1, 1, 0);
          break;
        }
        case RAM_SAVE_FLAG_MEM_SIZE:
          this.#checkBlockList();
          break;
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          // Only meaningful with multifd channels, which this stream has none of.
          break;
        case RAM_SAVE_FLAG_EOS:
          return;
      }
    }
  }

  #fillPage(block: RamBlock, page: number, fill: number): void {
    const at = block.offsetInSegment(page);
    block.segmentBytes(page).fill(fill, at, at + this.#dec.pageSize);
  }

  /**
   * Lands the page whose record was just read, and the PAGE records of the pages after it
   * that follow in the head chunk, in place (see the file comment). Returns how many pages
   * landed; 0 when the chunk cannot be rearranged or does not hold the whole first page.
   */
  #landRun(f: QEMUFileReader, block: RamBlock, page: number): number {
    if (!f.headWritable) return 0;
    const buf = f.headBuffer;
    const pos = f.headOffset;
    const size = this.#dec.pageSize;
    const record = RAM_PAGE_HEADER_BYTES + size;
    // The 8-byte aligned spot at or below the first page: it overwrites only consumed bytes.
    const landing = pos - ((buf.byteOffset + pos) & 7);
    if (landing < 0 || pos + size > buf.length) return 0;
    const max = block.pagesToSegmentEnd(page);
    const offset = page * size;
    let n = 1;
    for (let h = pos + size; n < max && h + record <= buf.length; h += record, n++) {
      const want = offset + n * size + CONTINUE_PAGE;
      if (buf.readUInt32BE(h) !== Math.floor(want / TWO_POW_32)) break;
      if (buf.readUInt32BE(h + 4) !== want >>> 0) break;
    }
    for (let k = 0; k < n; k++) {
      const from = pos + k * record;
      const to = landing + k * size;
      if (from !== to) buf.copyWithin(to, from, from + size);
    }
    buf.copy(block.segmentBytes(page), block.offsetInSegment(page), landing, landing + n * size);
    f.consumeHead(n * record - RAM_PAGE_HEADER_BYTES);
    return n;
  }

  /**
   * Counts `records` records, `pages` of them pages written for the first time in a block
   * that was pristine, and tells the prefaulter every PREFAULT_STEP records where the loader
   * is and whether the stream is dense with such pages. Later passes (pages already written)
   * and blocks that held something before the load have their pages already: no running ahead.
   */
  #progress(next: number, records: number, pages: number): void {
    this.#records += records;
    this.#pages += pages;
    if (this.#records < PREFAULT_STEP) return;
    this.#prefault.ahead(
      this.#lastBlockIndex,
      next,
      this.#pages * PREFAULT_STEP >= PREFAULT_DENSE * this.#records,
    );
    this.#records = 0;
    this.#pages = 0;
  }

  /** The source's blocks must be ours, with the same used length (QEMU's messages). */
  #checkBlockList(): void {
    for (const src of this.#dec.blocks) {
      const local = this.#memory.block(src.idstr);
      if (local === undefined) {
        throw new Error(`Unknown ramblock "${src.idstr}", cannot accept migration`);
      }
      if (local.usedLength !== src.usedLength) {
        throw new Error(
          `Length mismatch: ${src.idstr}: 0x${src.usedLength.toString(16)} in != ` +
            `0x${local.usedLength.toString(16)}: Invalid argument`,
        );
      }
    }
  }

  #blockOf(name: string, offset: number): RamBlock {
    let block = this.#lastBlock;
    if (name !== this.#lastName || block === null) {
      block = this.#memory.block(name) ?? null;
      if (block === null) throw new Error(`Unknown ramblock "${name}", cannot accept migration`);
      this.#lastName = name;
      this.#lastBlock = block;
      this.#lastBlockIndex = this.#memory.blocks.indexOf(block);
      this.#lastReceived = this.#received[this.#lastBlockIndex] ?? null;
    }
    // The decoder bounds pages by the MEM_SIZE list; a stream without one is bounded here.
    if (offset + this.#dec.pageSize > block.usedLength) {
      throw new Error(
        `page offset 0x${offset.toString(16)} is outside RAM block '${name}' ` +
          `(0x${block.usedLength.toString(16)} bytes)`,
      );
    }
    return block;
  }
}
