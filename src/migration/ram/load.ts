/**
 * The load side of QEMU's RAM migration (`ram_load_precopy`): the MEM_SIZE list must name the
 * local blocks with their used lengths, ZERO records fill a page (only when it does not
 * already hold that byte, so untouched memory stays untouched), PAGE records are read straight
 * into guest RAM (through one aligned scratch page), CONTINUE reuses the last block, EOS ends
 * the section. This code allocates nothing per page: the block is looked up once per block
 * change and pages land in the cached segment views (Node's own view in Buffer#copy aside, see
 * ram/save.ts).
 */
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { RamBlock } from '../../memory/ram-block.ts';
import type { QEMUFileReader } from '../stream/index.ts';
import {
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RAM_SECTION_VERSION_ID,
  RamRecordDecoder,
} from './format.ts';

export class RamLoadState {
  readonly #memory: GuestMemory;
  #dec = new RamRecordDecoder();
  /** Not from Buffer's pool: its own, aligned, memory. */
  readonly #scratch = Buffer.alloc(this.#dec.pageSize);
  /** The block of the last record, by the decoder's (reused) name string. */
  #lastName: string | null = null;
  #lastBlock: RamBlock | null = null;

  constructor(memory: GuestMemory) {
    this.#memory = memory;
  }

  /** A new incoming migration: forget the last stream's blocks. */
  setup(): void {
    this.#dec = new RamRecordDecoder();
    this.#lastName = null;
    this.#lastBlock = null;
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
          // Through an aligned page: V8 copies into shared memory word by word only when both
          // sides are equally aligned, and a page in the stream rarely is (a block name shifts
          // it by 4); byte by byte it is 3-4 times slower than two word-wise copies.
          const scratch = this.#scratch;
          if (!f.tryReadIntoAt(scratch, 0, pageSize)) {
            await f.readIntoAt(scratch, 0, pageSize, 'ram page');
          }
          scratch.copy(block.segmentBytes(page), block.offsetInSegment(page), 0, pageSize);
          break;
        }
        case RAM_SAVE_FLAG_ZERO: {
          const block = this.#blockOf(dec.block, dec.offset);
          const page = dec.offset / pageSize;
          if (dec.fill !== 0 || !block.isZeroPage(page)) {
            const at = block.offsetInSegment(page);
            block.segmentBytes(page).fill(dec.fill, at, at + pageSize);
          }
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
