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
 *
 * With multifd, pages come in RAM packets on the multifd channels (`loadPacket`, called by
 * multifd/recv.ts): zero pages as offsets, handled as ZERO records are; normal pages one
 * after another after the packet, landed in runs the same way. RAM_SAVE_FLAG_MULTIFD_FLUSH on
 * the main channel waits until every channel reached the matching SYNC (`multifd_recv_sync_main`).
 */
import { RamPrefaulter } from '../../guest/prefault.ts';
import { DirtyBitmap } from '../../memory/dirty-bitmap.ts';
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { RamBlock } from '../../memory/ram-block.ts';
import type { MultifdRamSink } from '../multifd/recv.ts';
import type { MultifdRamPacket } from '../multifd/wire.ts';
import { MultifdError } from '../multifd/wire.ts';
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

/** `multifd_recv_sync_main`, or nothing to wait for without multifd. */
export type MultifdRecvSync = () => Promise<void>;

const NO_MULTIFD: MultifdRecvSync = () => Promise.resolve();

export class RamLoadState implements MultifdRamSink {
  readonly #memory: GuestMemory;
  readonly #prefault: RamPrefaulter;
  #dec = new RamRecordDecoder();
  /** Not from Buffer's pool: its own, aligned, memory. */
  readonly #scratch = Buffer.alloc(this.#dec.pageSize);
  /** Aligned scratch pages of the multifd channels (one each, reused). */
  readonly #spare: Buffer[] = [];
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
  /** Block indexes by name, for multifd packets (which keep out of the main loader's cache). */
  #indexOf = new Map<string, number>();
  #multifdSync: MultifdRecvSync = NO_MULTIFD;

  constructor(memory: GuestMemory) {
    this.#memory = memory;
    this.#prefault = new RamPrefaulter(memory);
  }

  /** A new incoming migration: forget the last stream's blocks. */
  setup(multifdSync: MultifdRecvSync = NO_MULTIFD): void {
    this.#multifdSync = multifdSync;
    this.#indexOf = new Map(this.#memory.blocks.map((b, i) => [b.idstr, i]));
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
            if (!f.tryReadInto(scratch)) await f.readInto(scratch, 'ram page');
            scratch.copy(block.segmentBytes(page), block.offsetInSegment(page));
            n = 1;
          }
          // Only pages written for the first time fault: those are what the prefaulter is for.
          const fresh = this.#lastReceived?.setDirty(page, n) ?? 0;
          this.#progress(this.#lastBlockIndex, page + n, n, fresh);
          break;
        }
        case RAM_SAVE_FLAG_ZERO: {
          const block = this.#blockOf(dec.block, dec.offset);
          const page = dec.offset / pageSize;
          const received = this.#lastReceived;
          if (dec.fill !== 0) {
            this.#fillPage(block, page, dec.fill);
            received?.setDirty(page);
          } else {
            this.#zeroPage(block, page, received);
          }
          this.#progress(this.#lastBlockIndex, page + 1, 1, 0);
          break;
        }
        case RAM_SAVE_FLAG_MEM_SIZE:
          this.#checkBlockList();
          break;
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          await this.#multifdSync();
          break;
        case RAM_SAVE_FLAG_EOS:
          return;
      }
    }
  }

  /**
   * `multifd_recv_zero_page_process` + `nocomp_recv`: the zero pages of a multifd RAM packet,
   * then its normal pages, which follow it on the channel `f`, in runs of consecutive pages.
   */
  async loadPacket(packet: MultifdRamPacket, f: QEMUFileReader): Promise<void> {
    const index = this.#indexOf.get(packet.block);
    const block = index === undefined ? undefined : this.#memory.blocks[index];
    if (index === undefined || block === undefined) {
      throw new MultifdError(`multifd: unknown ram block ${packet.block}`);
    }
    packet.checkIn(block.usedLength);
    const size = packet.pageSize;
    const received = this.#received[index] ?? null;
    for (let i = 0; i < packet.zeroCount; i++) {
      this.#zeroPage(block, packet.zero[i]! / size, received);
    }
    if (packet.zeroCount > 0) {
      this.#progress(index, packet.zero[packet.zeroCount - 1]! / size + 1, packet.zeroCount, 0);
    }
    const normal = packet.normal;
    for (let i = 0; i < packet.normalCount;) {
      const page = normal[i]! / size;
      const max = Math.min(block.pagesToSegmentEnd(page), packet.normalCount - i);
      let n = 1;
      while (n < max && normal[i + n] === normal[i]! + n * size) n++;
      await this.#landContiguous(f, block, page, n);
      const fresh = received?.setDirty(page, n) ?? 0;
      this.#progress(index, page + n, n, fresh);
      i += n;
    }
  }

  /**
   * A zero page: written only when the page may hold something else. In a block that was
   * pristine when the load began, a page this load never wrote still holds zeros and stays
   * untouched (not even read: reading maps it).
   */
  #zeroPage(block: RamBlock, page: number, received: DirtyBitmap | null): void {
    if (received !== null && !received.isDirty(page)) return;
    if (!block.isZeroPage(page)) this.#fillPage(block, page, 0);
  }

  /**
   * Lands `n` pages that follow each other on the channel into consecutive pages of one
   * segment: as many whole pages as the head chunk holds in place, moved to an aligned spot
   * first (see #landRun), the rest a page at a time through the aligned scratch page.
   */
  async #landContiguous(
    f: QEMUFileReader,
    block: RamBlock,
    page: number,
    n: number,
  ): Promise<void> {
    const size = this.#dec.pageSize;
    let done = 0;
    while (done < n) {
      const seg = block.segmentBytes(page + done);
      const off = block.offsetInSegment(page + done);
      if (f.headWritable) {
        const buf = f.headBuffer;
        const pos = f.headOffset;
        const whole = Math.min(n - done, Math.floor((buf.length - pos) / size));
        const landing = pos - ((buf.byteOffset + pos) & 7);
        if (whole > 0 && landing >= 0) {
          const bytes = whole * size;
          if (landing !== pos) buf.copyWithin(landing, pos, pos + bytes);
          buf.copy(seg, off, landing, landing + bytes);
          f.consumeHead(bytes);
          done += whole;
          continue;
        }
      }
      // Each channel lands its own pages while the others wait for bytes: a scratch page each.
      const scratch = this.#spare.pop() ?? Buffer.alloc(size);
      try {
        if (!f.tryReadInto(scratch)) await f.readInto(scratch, 'multifd page');
        scratch.copy(seg, off);
      } finally {
        this.#spare.push(scratch);
      }
      done++;
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
  #progress(block: number, next: number, records: number, pages: number): void {
    this.#records += records;
    this.#pages += pages;
    if (this.#records < PREFAULT_STEP) return;
    this.#prefault.ahead(
      block,
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
