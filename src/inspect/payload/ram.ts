/**
 * The `ram` entry (section version 4): its records through the RAM format's own decoder, with
 * page bytes skipped, never kept. Pages and zero pages are counted per section and per RAMBlock.
 */
import {
  DEFAULT_TARGET_PAGE_BITS,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RamRecordDecoder,
} from '../../migration/ram/format.ts';
import type { RamFormatOptions } from '../../migration/ram/format.ts';
import type { MigrationConfiguration, QEMUFileReader } from '../../migration/stream/index.ts';
import type { EntryDecoder } from '../entry.ts';
import type { RamBlockTotals, RamPayload, RamTotals, SectionKind } from '../report.ts';

/** Capabilities named in the configuration that change the RAM layout. */
const CAP_IGNORE_SHARED = 'x-ignore-shared';
const CAP_MAPPED_RAM = 'mapped-ram';

/**
 * The RAM format of a stream, from its configuration section: page bits (x86 sends none: 12)
 * and x-ignore-shared (a guest address per MEM_SIZE block). postcopy-ram's per-block page size
 * is not announced in the stream, and postcopy never runs with VFIO devices (§3.4): off.
 */
export function ramFormatOf(cfg: MigrationConfiguration | null): RamFormatOptions {
  const caps = cfg?.capabilities ?? [];
  if (caps.includes(CAP_MAPPED_RAM)) {
    throw new Error('the mapped-ram file layout is not supported');
  }
  return {
    pageBits: cfg?.targetPageBits ?? DEFAULT_TARGET_PAGE_BITS,
    ignoreShared: caps.includes(CAP_IGNORE_SHARED),
  };
}

export class RamEntryDecoder implements EntryDecoder<RamPayload> {
  readonly format = 'ram';
  private readonly records: RamRecordDecoder;
  private readonly blocks = new Map<string, RamBlockTotals>();
  /** Totals of the block the decoder is on, looked up again only when the block changes. */
  private current: RamBlockTotals | null = null;
  private multifdFlushes = 0;

  constructor(opts: RamFormatOptions) {
    this.records = new RamRecordDecoder(opts);
  }

  begin(): RamPayload {
    return {
      format: 'ram',
      memSize: null,
      blocks: null,
      pages: 0,
      zeroPages: 0,
      multifdFlushes: 0,
    };
  }

  async decodeSection(r: QEMUFileReader, _type: SectionKind, s: RamPayload): Promise<void> {
    const dec = this.records;
    const pageSize = dec.pageSize;
    for (;;) {
      // The synchronous path covers buffered ZERO/PAGE/EOS records: no promise per page.
      const kind = dec.tryReadRecord(r) ?? (await dec.readRecord(r));
      switch (kind) {
        case RAM_SAVE_FLAG_EOS:
          return;
        case RAM_SAVE_FLAG_ZERO:
          s.zeroPages++;
          this.block().zeroPages++;
          break;
        case RAM_SAVE_FLAG_PAGE:
          s.pages++;
          this.block().pages++;
          if (!r.trySkip(pageSize)) await r.skip(pageSize, 'ram page');
          break;
        case RAM_SAVE_FLAG_MEM_SIZE:
          // After MEM_SIZE the decoder's offset field holds the total RAM size.
          s.memSize = dec.offset;
          s.blocks = dec.blocks.map((b) => ({ ...b }));
          for (const b of dec.blocks) {
            if (!this.blocks.has(b.idstr)) {
              this.blocks.set(b.idstr, {
                idstr: b.idstr,
                usedLength: b.usedLength,
                pages: 0,
                zeroPages: 0,
              });
            }
          }
          this.current = null;
          break;
        case RAM_SAVE_FLAG_MULTIFD_FLUSH:
          s.multifdFlushes++;
          this.multifdFlushes++;
          break;
      }
    }
  }

  totals(): RamTotals {
    const blocks = [...this.blocks.values()].map((b) => ({ ...b }));
    const pages = blocks.reduce((n, b) => n + b.pages, 0);
    return {
      pageSize: this.records.pageSize,
      blocks,
      pages,
      zeroPages: blocks.reduce((n, b) => n + b.zeroPages, 0),
      pageBytes: pages * this.records.pageSize,
      multifdFlushes: this.multifdFlushes,
    };
  }

  /** Totals of the current record's block (a block without MEM_SIZE entry is listed as met). */
  private block(): RamBlockTotals {
    const name = this.records.block;
    let b = this.current;
    if (b === null || b.idstr !== name) {
      b = this.blocks.get(name) ?? null;
      if (b === null) {
        b = { idstr: name, usedLength: 0, pages: 0, zeroPages: 0 };
        this.blocks.set(name, b);
      }
      this.current = b;
    }
    return b;
  }
}
