/**
 * The wire format of QEMU's "ram" section (migration/ram.c, QEMU 7.2–10.x), without the
 * handler: record headers, block names, the MEM_SIZE block list, zero and normal pages.
 *
 * Every record starts with a u64 header: the page offset inside its RAMBlock with flags in
 * the low TARGET_PAGE_BITS bits. ZERO and PAGE records then carry the block name as a
 * counted string unless CONTINUE says "same block as the previous record"; a ZERO record
 * ends with one fill byte (QEMU writes 0), a PAGE record with the page itself. A section's
 * payload is a run of records closed by EOS.
 *
 * The START section (section version 4) holds `MEM_SIZE` with the total RAM size in the
 * header, then per block: counted idstr, u64 used_length, a u64 page size when postcopy-ram
 * is on and the block's page size differs from the host's, and a u64 guest address when
 * x-ignore-shared is on (mapped-ram, a file-only layout, is not supported). With multifd a
 * MULTIFD_FLUSH record precedes the final EOS of a section.
 *
 * Both directions work without allocation per page: the encoder caches block names, the
 * decoder keeps the current record in its own fields and reuses the block name while it
 * does not change.
 */
import { badInput, idstrBytes, putIdstr, readIdstr } from '../stream/index.ts';
import type { QEMUFileReader, QEMUFileWriter } from '../stream/index.ts';

/** Obsolete since 2009; refused. */
export const RAM_SAVE_FLAG_FULL = 0x01;
/** A page whose bytes are all the fill byte that follows (formerly COMPRESS). */
export const RAM_SAVE_FLAG_ZERO = 0x02;
export const RAM_SAVE_FLAG_MEM_SIZE = 0x04;
export const RAM_SAVE_FLAG_PAGE = 0x08;
export const RAM_SAVE_FLAG_EOS = 0x10;
export const RAM_SAVE_FLAG_CONTINUE = 0x20;
export const RAM_SAVE_FLAG_XBZRLE = 0x40;
/** RDMA only. */
export const RAM_SAVE_FLAG_HOOK = 0x80;
/** Compressed pages, removed in QEMU 9.1. */
export const RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
/** Since QEMU 8.1, with multifd: the destination syncs its multifd channels. */
export const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

export const RAM_SECTION_IDSTR = 'ram';
export const RAM_SECTION_VERSION_ID = 4;
/** x86 (and the minimum of most targets). */
export const DEFAULT_TARGET_PAGE_BITS = 12;
/** Decoding bound on the MEM_SIZE block list. */
export const RAM_BLOCKS_MAX = 4096;
/** The u64 that starts every record. */
export const RAM_PAGE_HEADER_BYTES = 8;

const TWO_POW_32 = 0x100000000;

export interface RamBlockInfo {
  idstr: string;
  usedLength: number;
  /** Written with postcopy-ram when the block's page size is not the host's. */
  pageSize?: number;
  /** Written with x-ignore-shared: the block's guest address. */
  mrAddr?: number;
}

export interface RamFormatOptions {
  /** TARGET_PAGE_BITS of the guest (default 12). */
  pageBits?: number;
  /** x-ignore-shared is on: every MEM_SIZE block carries its guest address. */
  ignoreShared?: boolean;
  /**
   * postcopy-ram is on. Encoding writes `pageSize` where a block has one; decoding reads a
   * page size for the blocks this returns true for (the destination's own blocks whose page
   * size differs from the host's).
   */
  postcopyPageSize?: (idstr: string) => boolean;
}

interface Bits {
  pageBits: number;
  pageSize: number;
  flagMask: number;
}

function bitsOf(opts: RamFormatOptions): Bits {
  const pageBits = opts.pageBits ?? DEFAULT_TARGET_PAGE_BITS;
  if (!Number.isInteger(pageBits) || pageBits < 10 || pageBits > 16) {
    throw new RangeError(`ram format: page bits ${pageBits} outside 10..16`);
  }
  return { pageBits, pageSize: 1 << pageBits, flagMask: (1 << pageBits) - 1 };
}

export class RamRecordEncoder {
  readonly pageSize: number;
  private readonly opts: RamFormatOptions;
  private readonly names = new Map<string, Buffer>();
  private lastBlock: string | null = null;

  constructor(opts: RamFormatOptions = {}) {
    this.opts = opts;
    this.pageSize = bitsOf(opts).pageSize;
  }

  /** Forgets the last block, so the next page names its block again. */
  resetBlock(): void {
    this.lastBlock = null;
  }

  /** The START section's block list: `total | MEM_SIZE`, then each block. */
  putMemSize(w: QEMUFileWriter, blocks: readonly RamBlockInfo[]): void {
    let total = 0;
    for (const b of blocks) total += b.usedLength;
    this.putHeader(w, total, RAM_SAVE_FLAG_MEM_SIZE);
    for (const b of blocks) {
      putIdstr(w, b.idstr, 'RAM block idstr');
      w.putBe64(b.usedLength);
      if (this.opts.postcopyPageSize !== undefined && b.pageSize !== undefined) {
        w.putBe64(b.pageSize);
      }
      if (this.opts.ignoreShared === true) {
        if (b.mrAddr === undefined) {
          throw new RangeError(`RAM block ${b.idstr}: x-ignore-shared needs its address`);
        }
        w.putBe64(b.mrAddr);
      }
    }
  }

  putZeroPage(w: QEMUFileWriter, block: string, offset: number): void {
    this.putPageHeader(w, block, offset, RAM_SAVE_FLAG_ZERO);
    w.putU8(0);
  }

  /** A normal page; `data` is exactly one target page. */
  putPage(w: QEMUFileWriter, block: string, offset: number, data: Uint8Array): void {
    if (data.length !== this.pageSize) {
      throw new RangeError(`putPage: ${data.length} bytes, a page is ${this.pageSize}`);
    }
    this.putPageHeader(w, block, offset, RAM_SAVE_FLAG_PAGE);
    w.putBuffer(data);
  }

  /**
   * `count` consecutive normal pages from `offset` of `block`, the same records `putPage`
   * writes, laid out in place in the writer's staging buffer: one native copy brings the pages
   * from `src` (guest RAM) to an 8-byte aligned spot, then each is moved up to make room for
   * its header (`copyWithin`, a plain memmove). So a run costs no allocation and a word-wise
   * copy out of shared memory, whatever the alignment the headers give the pages in the
   * stream. `copy(dst, dstOffset, count)` copies the run's pages from guest RAM.
   */
  putPageRun(
    w: QEMUFileWriter,
    block: string,
    offset: number,
    count: number,
    copy: (dst: Buffer, dstOffset: number, pages: number) => void,
  ): void {
    const page = this.pageSize;
    const record = RAM_PAGE_HEADER_BYTES + page;
    let done = 0;
    while (done < count) {
      const cont = block === this.lastBlock;
      const first = cont ? RAM_PAGE_HEADER_BYTES : this.namedHeaderBytes(block);
      const fit = Math.floor((w.chunkBytes - first + RAM_PAGE_HEADER_BYTES) / record);
      if (fit < 1) throw new RangeError(`putPageRun: a ${w.chunkBytes}-byte chunk holds no page`);
      const n = Math.min(count - done, fit);
      const bytes = first - RAM_PAGE_HEADER_BYTES + n * record;
      const at = w.reserve(bytes);
      const buf = w.stagingBuffer;
      // Land the pages 8-byte aligned at or before their first final place (the headers then
      // push each one up, never down, so moving from the last one back overwrites nothing).
      const landing = at + first - ((buf.byteOffset + at + first) & 7);
      copy(buf, landing, n);
      for (let k = n - 1; k >= 0; k--) {
        const to = at + first + k * record;
        const from = landing + k * page;
        if (to !== from) buf.copyWithin(to, from, from + page);
      }
      const pageOffset = offset + done * page;
      this.writePageHeader(buf, at, block, pageOffset, RAM_SAVE_FLAG_PAGE, cont);
      for (let k = 1; k < n; k++) {
        const h = at + first + k * record - RAM_PAGE_HEADER_BYTES;
        writeHeader(buf, h, pageOffset + k * page + (RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_CONTINUE));
      }
      this.lastBlock = block;
      w.commit(bytes);
      done += n;
    }
  }

  putEos(w: QEMUFileWriter): void {
    this.putHeader(w, 0, RAM_SAVE_FLAG_EOS);
  }

  putMultifdFlush(w: QEMUFileWriter): void {
    this.putHeader(w, 0, RAM_SAVE_FLAG_MULTIFD_FLUSH);
  }

  /** The header of a record that names its block: u64, length byte, the name. */
  private namedHeaderBytes(block: string): number {
    return RAM_PAGE_HEADER_BYTES + 1 + this.nameOf(block).length;
  }

  private nameOf(block: string): Buffer {
    let name = this.names.get(block);
    if (name === undefined) {
      name = idstrBytes(block, 'RAM block idstr');
      this.names.set(block, name);
    }
    return name;
  }

  /** A page record's header at `buf[at..]`, with the block name unless `cont`. */
  private writePageHeader(
    buf: Buffer,
    at: number,
    block: string,
    offset: number,
    flag: number,
    cont: boolean,
  ): void {
    this.checkAddr(offset);
    writeHeader(buf, at, offset + (cont ? flag | RAM_SAVE_FLAG_CONTINUE : flag));
    if (cont) return;
    const name = this.nameOf(block);
    buf[at + RAM_PAGE_HEADER_BYTES] = name.length;
    name.copy(buf, at + RAM_PAGE_HEADER_BYTES + 1);
  }

  /** Header, then the block name unless it is the same block as the last page (CONTINUE). */
  private putPageHeader(w: QEMUFileWriter, block: string, offset: number, flag: number): void {
    const cont = block === this.lastBlock;
    this.putHeader(w, offset, cont ? flag | RAM_SAVE_FLAG_CONTINUE : flag);
    if (cont) return;
    const name = this.nameOf(block);
    w.putU8(name.length);
    w.putBuffer(name);
    this.lastBlock = block;
  }

  private putHeader(w: QEMUFileWriter, addr: number, flags: number): void {
    this.checkAddr(addr);
    w.putBe64(addr + flags);
  }

  private checkAddr(addr: number): void {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % this.pageSize !== 0) {
      throw new RangeError(`ram record: ${addr} is not a page-aligned u64`);
    }
  }
}

/** A u64 record header (a page offset with flags) at `buf[at..]`, big-endian. */
function writeHeader(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_POW_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

/**
 * Decodes records one at a time. After readRecord()/tryReadRecord() returns a kind (a
 * RAM_SAVE_FLAG_* value without CONTINUE), the record is in the decoder's fields:
 * ZERO → `block`, `offset`, `fill`; PAGE → `block`, `offset`, and the caller reads
 * `pageSize` bytes itself (`r.tryReadInto(dst) || await r.readInto(dst)`), straight into
 * guest memory; MEM_SIZE → `blocks`.
 */
export class RamRecordDecoder {
  readonly pageSize: number;
  private readonly bits: Bits;
  private readonly opts: RamFormatOptions;
  /** The RAMBlock of the current (ZERO/PAGE) record. */
  block = '';
  /** Page offset inside `block`. */
  offset = 0;
  /** ZERO: the fill byte (QEMU writes 0; newer loaders refuse anything else). */
  fill = 0;
  /** MEM_SIZE: the source's blocks; later records are checked against them. */
  blocks: RamBlockInfo[] = [];
  private readonly byName = new Map<string, RamBlockInfo>();
  private hasBlock = false;
  private blockLength = Number.POSITIVE_INFINITY;
  private readonly nameScratch = Buffer.alloc(255);
  private lastName = Buffer.alloc(0);

  constructor(opts: RamFormatOptions = {}) {
    this.opts = opts;
    this.bits = bitsOf(opts);
    this.pageSize = this.bits.pageSize;
  }

  /**
   * Synchronous fast path for ZERO, PAGE (header only), EOS and MULTIFD_FLUSH when the whole
   * record header is buffered. Returns undefined, consuming nothing, when it cannot decide
   * without waiting (or the record is anything else): then call readRecord().
   */
  tryReadRecord(r: QEMUFileReader): number | undefined {
    if (r.available() < 8) return undefined;
    const flags = ((r.tryPeekU8(6)! << 8) | r.tryPeekU8(7)!) & this.bits.flagMask;
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    let need = 8;
    if (kind === RAM_SAVE_FLAG_ZERO || kind === RAM_SAVE_FLAG_PAGE) {
      if ((flags & RAM_SAVE_FLAG_CONTINUE) === 0) {
        const len = r.tryPeekU8(8);
        if (len === undefined) return undefined;
        need += 1 + len;
      }
      if (kind === RAM_SAVE_FLAG_ZERO) need += 1;
    } else if (kind !== RAM_SAVE_FLAG_EOS && kind !== RAM_SAVE_FLAG_MULTIFD_FLUSH) {
      return undefined;
    }
    if (r.available() < need) return undefined;
    const at = r.offset;
    this.parseHeader(r.tryBe32()!, r.tryBe32()!, at);
    if (kind === RAM_SAVE_FLAG_ZERO || kind === RAM_SAVE_FLAG_PAGE) {
      if ((flags & RAM_SAVE_FLAG_CONTINUE) === 0) {
        const name = this.nameScratch.subarray(0, r.tryU8());
        r.tryReadInto(name);
        this.bindBlock(name, at);
      } else {
        this.requireBlock(at);
      }
      this.checkPage(at);
      if (kind === RAM_SAVE_FLAG_ZERO) this.fill = r.tryU8()!;
    }
    return kind;
  }

  /** The next record, waiting for bytes as needed. */
  async readRecord(r: QEMUFileReader): Promise<number> {
    const fast = this.tryReadRecord(r);
    if (fast !== undefined) return fast;
    const at = r.offset;
    const hi = await r.getBe32('ram record header');
    const lo = await r.getBe32('ram record header');
    const flags = this.parseHeader(hi, lo, at);
    const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
    switch (kind) {
      case RAM_SAVE_FLAG_ZERO:
      case RAM_SAVE_FLAG_PAGE:
        if ((flags & RAM_SAVE_FLAG_CONTINUE) === 0) {
          const len = await r.getU8('RAM block idstr length');
          const name = this.nameScratch.subarray(0, len);
          await r.readInto(name, 'RAM block idstr');
          this.bindBlock(name, at);
        } else {
          this.requireBlock(at);
        }
        this.checkPage(at);
        if (kind === RAM_SAVE_FLAG_ZERO) this.fill = await r.getU8('zero page fill byte');
        return kind;
      case RAM_SAVE_FLAG_MEM_SIZE:
        await this.readBlockList(r, this.offset, at);
        return kind;
      case RAM_SAVE_FLAG_EOS:
      case RAM_SAVE_FLAG_MULTIFD_FLUSH:
        return kind;
      default:
        throw badInput(at, 'ram record header', unsupported(flags));
    }
  }

  /** Splits the header into `offset` and flags (CONTINUE is only meaningful on pages). */
  private parseHeader(hi: number, lo: number, at: number): number {
    const flags = lo & this.bits.flagMask;
    if (hi > 0x1fffff) {
      throw badInput(at, 'ram record header', `address 0x${hi.toString(16)}xxxxxxxx is too large`);
    }
    this.offset = hi * TWO_POW_32 + (lo - flags);
    return flags;
  }

  private bindBlock(name: Buffer, at: number): void {
    if (!this.hasBlock || !name.equals(this.lastName)) {
      this.block = name.toString('latin1');
      this.lastName = Buffer.from(name);
      const info = this.byName.get(this.block);
      if (this.blocks.length > 0 && info === undefined) {
        throw badInput(at, 'ram record', `unknown RAM block '${this.block}'`);
      }
      this.blockLength = info?.usedLength ?? Number.POSITIVE_INFINITY;
      this.hasBlock = true;
    }
  }

  private requireBlock(at: number): void {
    if (!this.hasBlock) {
      throw badInput(at, 'ram record', 'RAM_SAVE_FLAG_CONTINUE before any block was named');
    }
  }

  private checkPage(at: number): void {
    if (this.offset + this.pageSize > this.blockLength) {
      throw badInput(
        at,
        'ram record',
        `page offset 0x${this.offset.toString(16)} is outside RAM block '${this.block}' ` +
          `(used length 0x${this.blockLength.toString(16)})`,
      );
    }
  }

  private async readBlockList(r: QEMUFileReader, total: number, at: number): Promise<void> {
    const blocks: RamBlockInfo[] = [];
    this.byName.clear();
    let left = total;
    while (left > 0) {
      if (blocks.length === RAM_BLOCKS_MAX) {
        throw badInput(at, 'ram MEM_SIZE', `more than ${RAM_BLOCKS_MAX} RAM blocks`);
      }
      const blockAt = r.offset;
      const idstr = await readIdstr(r, 'RAM block idstr');
      const usedLength = await r.getBe64Number('RAM block used length');
      if (usedLength > left) {
        throw badInput(
          blockAt,
          'ram MEM_SIZE',
          `block '${idstr}' (0x${usedLength.toString(16)} bytes) overruns the total 0x${total.toString(16)}`,
        );
      }
      if (usedLength === 0) throw badInput(blockAt, 'ram MEM_SIZE', `block '${idstr}' is empty`);
      const block: RamBlockInfo = { idstr, usedLength };
      if (this.opts.postcopyPageSize?.(idstr) === true) {
        block.pageSize = await r.getBe64Number('RAM block page size');
      }
      if (this.opts.ignoreShared === true) {
        block.mrAddr = await r.getBe64Number('RAM block address');
      }
      if (this.byName.has(idstr)) {
        throw badInput(blockAt, 'ram MEM_SIZE', `block '${idstr}' listed twice`);
      }
      this.byName.set(idstr, block);
      blocks.push(block);
      left -= usedLength;
    }
    this.blocks = blocks;
    this.hasBlock = false;
  }
}

function unsupported(flags: number): string {
  const kind = flags & ~RAM_SAVE_FLAG_CONTINUE;
  const hex = `0x${flags.toString(16)}`;
  switch (kind) {
    case RAM_SAVE_FLAG_XBZRLE:
      return `XBZRLE pages (flags ${hex}) are not supported`;
    case RAM_SAVE_FLAG_COMPRESS_PAGE:
      return `compressed pages (flags ${hex}) are not supported`;
    case RAM_SAVE_FLAG_HOOK:
      return `RDMA hook records (flags ${hex}) are not supported`;
    case RAM_SAVE_FLAG_FULL:
      return `obsolete RAM_SAVE_FLAG_FULL (flags ${hex})`;
    default:
      return `unknown combination of migration flags: ${hex}`;
  }
}
