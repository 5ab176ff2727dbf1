/**
 * Guest memory: the RAM blocks of one VM and where they sit in guest-physical space. It is also
 * what devices DMA into (the `DmaMemory` of device/device.ts). Device writes go straight to the
 * bytes and do not touch the vCPU dirty log, as on real hardware: VFIO DMA bypasses KVM's log
 * and is found by device or IOMMU dirty tracking (qemu-migration.md §3.5). Such a tracker can
 * watch DMA writes through `addDmaWriteObserver`.
 */
import { createHash } from 'node:crypto';
import type { DmaMemory } from '../device/device.ts';
import { DirtyLogListeners } from './dirty-log-listeners.ts';
import { type Layout, type RamMappingSpec, flatLayout, pcLayout } from './layout.ts';
import { hex, isPageAligned } from './page.ts';
import { RamBlock, type RamBlockOptions, type SharedRamBlock } from './ram-block.ts';

export interface RamMapping {
  readonly name: string;
  readonly gpa: number;
  readonly block: RamBlock;
  readonly offset: number;
  readonly length: number;
}

/** Called after each device DMA write with its guest-physical range. */
export type DmaWriteObserver = (iova: number, length: number) => void;

export interface RamDigest {
  /**
   * SHA-256 over one line per block, `${idstr} ${usedLength} ${sha256}\n`, in block order: a
   * single value for the whole RAM without hashing the bytes twice.
   */
  readonly sha256: string;
  readonly blocks: readonly { idstr: string; usedLength: number; sha256: string }[];
}

export class GuestMemory implements DmaMemory {
  readonly blocks: readonly RamBlock[];
  /** Sorted by GPA, non-overlapping. */
  readonly mappings: readonly RamMapping[];
  /** `DmaMemory.regions`: the mappings as IOVA windows (no vIOMMU: IOVA = GPA). */
  readonly regions: readonly { iova: number; length: number }[];
  readonly #observers: DmaWriteObserver[] = [];
  /** Device and IOMMU dirty trackers, driven by RAM migration (qemu-migration.md §3.5). */
  readonly dirtyLogListeners = new DirtyLogListeners();

  constructor(blocks: readonly RamBlock[], mappings: readonly RamMappingSpec[]) {
    const byId = new Map<string, RamBlock>();
    for (const b of blocks) {
      if (byId.has(b.idstr)) throw new RangeError(`guest memory: two RAM blocks named ${b.idstr}`);
      byId.set(b.idstr, b);
    }
    const resolved = mappings.map((m, i) => resolveMapping(m, i, byId));
    resolved.sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < resolved.length; i++) {
      const prev = resolved[i - 1]!;
      const cur = resolved[i]!;
      if (prev.gpa + prev.length > cur.gpa) {
        throw new RangeError(
          `guest memory: ${cur.name} at ${hex(cur.gpa)} overlaps ${prev.name} ending at ${hex(prev.gpa + prev.length)}`,
        );
      }
    }
    this.blocks = [...blocks];
    this.mappings = resolved;
    this.regions = resolved.map((m) => ({ iova: m.gpa, length: m.length }));
  }

  /** Allocates the blocks of `layout` and maps them. */
  static fromLayout(layout: Layout, options: Omit<RamBlockOptions, 'backing'> = {}): GuestMemory {
    const blocks = layout.blocks.map((b) => new RamBlock(b.idstr, b.size, options));
    return new GuestMemory(blocks, layout.mappings);
  }

  /** QEMU's "pc" machine: one block "pc.ram" below and above 4 GiB (see layout.ts). */
  static pc(ramSize: number, options: Omit<RamBlockOptions, 'backing'> = {}): GuestMemory {
    return GuestMemory.fromLayout(pcLayout(ramSize), options);
  }

  /** Blocks each mapped whole at `gpa` (or right after the previous one). */
  static flat(
    blocks: readonly { idstr: string; size: number; gpa?: number }[],
    options: Omit<RamBlockOptions, 'backing'> = {},
  ): GuestMemory {
    return GuestMemory.fromLayout(flatLayout(blocks), options);
  }

  /** Sum of the blocks' used lengths. */
  get ramSize(): number {
    return this.blocks.reduce((n, b) => n + b.usedLength, 0);
  }

  /** Target pages over all blocks. */
  get totalPages(): number {
    return this.blocks.reduce((n, b) => n + b.pages, 0);
  }

  block(idstr: string): RamBlock | undefined {
    return this.blocks.find((b) => b.idstr === idstr);
  }

  /** The mapping containing `gpa`, or undefined for a hole. */
  findMapping(gpa: number): RamMapping | undefined {
    for (const m of this.mappings) {
      if (gpa < m.gpa) return undefined;
      if (gpa < m.gpa + m.length) return m;
    }
    return undefined;
  }

  /** The first address of [gpa, gpa+length) that is not guest RAM; undefined when all is. */
  firstNonRam(gpa: number, length: number): number | undefined {
    for (let at = gpa; at < gpa + length;) {
      const m = this.findMapping(at);
      if (m === undefined) return at;
      at = m.gpa + m.length;
    }
    return undefined;
  }

  /** GPA -> (block, offset in block), or undefined for a hole. */
  translate(gpa: number): { block: RamBlock; offset: number } | undefined {
    const m = this.findMapping(gpa);
    return m && { block: m.block, offset: m.offset + (gpa - m.gpa) };
  }

  /** Descriptors of every block, for vCPU threads. */
  shared(): SharedRamBlock[] {
    return this.blocks.map((b) => b.shared());
  }

  // --- DmaMemory --------------------------------------------------------------------------

  /**
   * A device's DMA write. The whole range must be RAM (it may cross adjacent mappings); nothing
   * is written otherwise. No vCPU dirty bit is set; observers are told afterwards.
   */
  write(iova: number, data: Uint8Array): void {
    this.#checkMapped(iova, data.length, 'DMA write');
    this.#eachPiece(iova, data.length, (block, offset, pos, n) => {
      block.write(offset, pos === 0 && n === data.length ? data : data.subarray(pos, pos + n));
    });
    for (const observe of this.#observers) observe(iova, data.length);
  }

  /** A device's DMA read: a copy of `length` bytes at `iova`. */
  read(iova: number, length: number): Uint8Array {
    this.#checkMapped(iova, length, 'DMA read');
    const out = new Uint8Array(length);
    this.#eachPiece(iova, length, (block, offset, pos, n) => {
      block.readInto(offset, out.subarray(pos, pos + n));
    });
    return out;
  }

  /** Watches device DMA writes (e.g. a dirty tracker); returns the function that stops it. */
  addDmaWriteObserver(observer: DmaWriteObserver): () => void {
    this.#observers.push(observer);
    return () => {
      const i = this.#observers.indexOf(observer);
      if (i >= 0) this.#observers.splice(i, 1);
    };
  }

  // --- dirty logging and content ------------------------------------------------------------

  /** `migration_bitmap_sync` over every block: the number of pages that became dirty. */
  syncDirtyBitmap(): number {
    let fresh = 0;
    for (const b of this.blocks) fresh += b.syncDirtyBitmap();
    return fresh;
  }

  /**
   * `memory_global_dirty_log_sync` then `migration_bitmap_sync`: the device/IOMMU trackers
   * mark what they saw, then the vCPU log is moved in. Returns the newly dirty page count.
   */
  async syncAllDirtyLogs(final: boolean): Promise<number> {
    const before = this.dirtyCount;
    await this.dirtyLogListeners.sync(final);
    const fromDevices = this.dirtyCount - before;
    return fromDevices + this.syncDirtyBitmap();
  }

  /**
   * QEMU's `-mem-prealloc`: every page of RAM is backed now, before the guest (or an incoming
   * migration) needs it, so nothing later pays a first-touch page fault (RamBlock.prealloc).
   */
  prealloc(): void {
    for (const b of this.blocks) b.prealloc();
  }

  /** Dirty pages in the migration bitmaps of all blocks. */
  get dirtyCount(): number {
    return this.blocks.reduce((n, b) => n + b.bitmap.dirtyCount, 0);
  }

  /** SHA-256 of each block and of the whole RAM (about 0.7 s per GiB with SHA-NI). */
  digest(): RamDigest {
    const blocks = this.blocks.map((b) => ({
      idstr: b.idstr,
      usedLength: b.usedLength,
      sha256: b.digest(),
    }));
    const all = createHash('sha256');
    for (const b of blocks) all.update(`${b.idstr} ${b.usedLength} ${b.sha256}\n`);
    return { sha256: all.digest('hex'), blocks };
  }

  #checkMapped(iova: number, length: number, what: string): void {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length < 0) {
      throw new RangeError(`${what}: [${iova}, +${length}) is not a pair of naturals`);
    }
    const at = this.firstNonRam(iova, length);
    if (at !== undefined) {
      throw new RangeError(
        `${what} of ${length} bytes at IOVA ${hex(iova)}: ${hex(at)} is not guest RAM`,
      );
    }
  }

  #eachPiece(
    iova: number,
    length: number,
    fn: (block: RamBlock, offset: number, pos: number, n: number) => void,
  ): void {
    let pos = 0;
    while (pos < length) {
      const m = this.findMapping(iova + pos)!;
      const inMap = iova + pos - m.gpa;
      const n = Math.min(length - pos, m.length - inMap);
      fn(m.block, m.offset + inMap, pos, n);
      pos += n;
    }
  }
}

function resolveMapping(
  spec: RamMappingSpec,
  index: number,
  blocks: ReadonlyMap<string, RamBlock>,
): RamMapping {
  const name = spec.name ?? spec.block;
  const block = blocks.get(spec.block);
  if (block === undefined) {
    throw new RangeError(
      `guest memory: mapping ${index} (${name}) names unknown block ${spec.block}`,
    );
  }
  for (const [field, v] of [
    ['gpa', spec.gpa],
    ['offset', spec.offset],
    ['length', spec.length],
  ] as const) {
    if (!isPageAligned(v) || v < 0) {
      throw new RangeError(`guest memory: ${name}.${field} ${v} is not a page-aligned natural`);
    }
  }
  if (spec.length === 0 || spec.offset + spec.length > block.usedLength) {
    throw new RangeError(
      `guest memory: ${name} maps [${hex(spec.offset)}, +${hex(spec.length)}) of ${block.idstr} (${hex(block.usedLength)} bytes)`,
    );
  }
  if (!Number.isSafeInteger(spec.gpa + spec.length)) {
    throw new RangeError(`guest memory: ${name} ends beyond 2^53`);
  }
  return { name, gpa: spec.gpa, block, offset: spec.offset, length: spec.length };
}
