/**
 * The host IOMMU the VM's VFIO devices sit behind: QEMU's VFIO container (a type1 container
 * or an iommufd IOAS). It maps IOVA ranges onto guest RAM (VFIO_IOMMU_MAP_DMA / UNMAP_DMA),
 * translates every device DMA through those mappings, and — the part migration cares about —
 * may track the pages devices write (qemu-migration.md §3.5):
 *
 *   none             no dirty tracking (`dirty_pages_supported` false): whoever asks must
 *                    take every page as dirty
 *   type1-perpetual  type1 VFIO_IOMMU_DIRTY_PAGES with devices that do not pin: the kernel
 *                    reports every mapped page dirty at every query
 *   type1-pinned     type1 where every device pins what it DMAs to (pinned-page scope, as
 *                    mdev vendor drivers do): the pages pinned since the last query and the
 *                    pages still pinned
 *   iommufd          iommufd HWPT dirty tracking: the IOMMU's dirty bits, exactly the pages
 *                    written by DMA. The only mode QEMU counts as IOMMU dirty tracking
 *                    (`vbasedev->iommu_dirty_tracking`); type1 only ever says "all mapped"
 *                    or "all pinned"
 *
 * Dirty state is kept per IOVA page, as the hardware keeps it, so an unmap must read the bits
 * of its range first (`unmap` with a bitmap is type1's GET_DIRTY_BITMAP flag). IOVAs and GPAs
 * are numbers below 2^53; the page is the host page, 4 KiB.
 */
import type { DmaMemory } from '../../device/device.ts';
import { fail } from '../../uapi/index.ts';
import type { GuestMemory } from '../guest-memory.ts';
import { hex } from '../page.ts';
import { pageBitmapBytes, setPageBits } from './page-bits.ts';

export const HOST_IOMMU_MODES = ['none', 'type1-perpetual', 'type1-pinned', 'iommufd'] as const;
export type HostIommuMode = (typeof HOST_IOMMU_MODES)[number];

/** The IOMMU page: the granule of mappings and of every dirty bitmap (the host page). */
export const IOMMU_PAGE_SIZE = 4096;
/**
 * type1's `DIRTY_BITMAP_SIZE_MAX`: the largest bitmap it copies out, 256 MiB, i.e. 8 TiB of
 * 4 KiB pages (`max_dirty_bitmap_size` in QEMU).
 */
export const TYPE1_MAX_DIRTY_BITMAP_SIZE = 256 << 20;

/** One IOVA range mapped onto guest RAM. */
export interface IommuMapping {
  readonly iova: number;
  readonly length: number;
  readonly gpa: number;
}

export interface IommuContainerOptions {
  /** type1's bitmap limit in bytes (default the kernel's); tests lower it. */
  readonly maxDirtyBitmapSize?: number;
}

const PAGE = IOMMU_PAGE_SIZE;

function checkRange(what: string, iova: number, length: number): void {
  if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0) {
    fail('EINVAL', `${what}: [${iova}, +${length}) is not a non-empty range of naturals`);
  }
  if (iova % PAGE !== 0 || length % PAGE !== 0) {
    fail('EINVAL', `${what}: ${hex(iova)}+${hex(length)} is not aligned to the IOMMU page`);
  }
  if (!Number.isSafeInteger(iova + length)) fail('EINVAL', `${what}: the range ends beyond 2^53`);
}

export class IommuContainer {
  readonly mode: HostIommuMode;
  readonly memory: GuestMemory;
  readonly maxDirtyBitmapSize: number;
  /** Sorted by IOVA, non-overlapping. */
  #mappings: IommuMapping[] = [];
  #tracking = false;
  /** iommufd: IOVA pages written since they were last reported. */
  readonly #written = new Set<number>();
  /** type1-pinned: pin count per IOVA page, and the pages pinned since the last report. */
  readonly #pins = new Map<number, number>();
  readonly #pinnedSinceReport = new Set<number>();
  /** DMA the IOMMU refused (unmapped IOVA): what a real one reports as a fault. */
  faults = 0;
  readonly #view: IommuDmaView;

  constructor(memory: GuestMemory, mode: HostIommuMode, opts: IommuContainerOptions = {}) {
    this.memory = memory;
    this.mode = mode;
    this.maxDirtyBitmapSize = opts.maxDirtyBitmapSize ?? TYPE1_MAX_DIRTY_BITMAP_SIZE;
    this.#view = mode === 'type1-pinned' ? new PinningDmaView(this) : new IommuDmaView(this);
  }

  /** `bcontainer->dirty_pages_supported`: the container can track dirty pages at all. */
  get dirtyPagesSupported(): boolean {
    return this.mode !== 'none';
  }

  /** `vbasedev->iommu_dirty_tracking`: real per-page tracking (iommufd only). */
  get iommuDirtyTracking(): boolean {
    return this.mode === 'iommufd';
  }

  /** A legacy type1 container (its bitmap limit applies, qemu-migration.md §3.4 item 2). */
  get legacyType1(): boolean {
    return this.mode === 'type1-perpetual' || this.mode === 'type1-pinned';
  }

  get dirtyTrackingStarted(): boolean {
    return this.#tracking;
  }

  get mappings(): readonly IommuMapping[] {
    return this.#mappings;
  }

  /** What the devices DMA through (a `DmaMemory`; it also pins in `type1-pinned` mode). */
  get dmaView(): DmaMemory {
    return this.#view;
  }

  /** VFIO_IOMMU_MAP_DMA: `length` bytes at `iova` onto guest RAM at `gpa`. */
  map(iova: number, length: number, gpa: number): void {
    checkRange('MAP_DMA', iova, length);
    if (this.memory.firstNonRam(gpa, length) !== undefined) {
      fail('EFAULT', `MAP_DMA: ${hex(gpa)}+${hex(length)} is not guest RAM`);
    }
    const clash = this.#mappings.find((m) => m.iova < iova + length && iova < m.iova + m.length);
    if (clash !== undefined) {
      throw new RangeError(
        `MAP_DMA: ${hex(iova)}+${hex(length)} overlaps the mapping at ${hex(clash.iova)} (EEXIST)`,
      );
    }
    this.#mappings.push({ iova, length, gpa });
    this.#mappings.sort((a, b) => a.iova - b.iova);
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA of every mapping inside [iova, iova+length); one that sticks out is
   * refused (type1 does not split mappings). Pins inside go with it (the kernel asks the
   * vendor driver to unpin). With `dirtyBitmap` (type1's GET_DIRTY_BITMAP; tracking must be
   * on) the bits of the range are read first, as `queryDirtyBitmap` reads them. Returns the
   * mappings removed.
   */
  unmap(iova: number, length: number, dirtyBitmap?: Uint8Array): IommuMapping[] {
    checkRange('UNMAP_DMA', iova, length);
    const end = iova + length;
    const inside = this.#mappings.filter((m) => m.iova < end && iova < m.iova + m.length);
    const split = inside.find((m) => m.iova < iova || m.iova + m.length > end);
    if (split !== undefined) {
      fail(
        'EINVAL',
        `UNMAP_DMA: ${hex(iova)}+${hex(length)} would split the mapping at ${hex(split.iova)}`,
      );
    }
    if (dirtyBitmap !== undefined) this.queryDirtyBitmap(iova, length, dirtyBitmap);
    this.#mappings = this.#mappings.filter((m) => !inside.includes(m));
    for (const m of inside) this.#forgetPages(m.iova, m.length);
    return inside;
  }

  /** IOVA -> GPA, or undefined when unmapped. */
  translate(iova: number): number | undefined {
    const m = this.#find(iova);
    return m === undefined ? undefined : m.gpa + (iova - m.iova);
  }

  /** VFIO_IOMMU_DIRTY_PAGES START/STOP. Pins that exist at start are dirty (type1). */
  setDirtyTracking(start: boolean): void {
    if (!this.dirtyPagesSupported) {
      fail('ENOTTY', 'DIRTY_PAGES: this IOMMU has no dirty page tracking');
    }
    this.#tracking = start;
    this.#written.clear();
    this.#pinnedSinceReport.clear();
    if (start) for (const page of this.#pins.keys()) this.#pinnedSinceReport.add(page);
  }

  /**
   * DIRTY_PAGES GET_BITMAP (or the iommufd equivalent): read-and-clear of [iova, iova+length)
   * into `bitmap` (bits only set; the caller zeroes it). What counts as dirty is the mode's.
   */
  queryDirtyBitmap(iova: number, length: number, bitmap: Uint8Array): void {
    checkRange('DIRTY_PAGES', iova, length);
    if (!this.#tracking) fail('EINVAL', 'DIRTY_PAGES: dirty tracking is not started');
    const pages = length / PAGE;
    const need = pageBitmapBytes(pages);
    if (need > this.maxDirtyBitmapSize && this.legacyType1) {
      fail('EINVAL', `DIRTY_PAGES: a ${need}-byte bitmap exceeds ${this.maxDirtyBitmapSize}`);
    }
    if (bitmap.length < need) {
      fail('EFAULT', `DIRTY_PAGES: the bitmap has ${bitmap.length} bytes, ${need} needed`);
    }
    const first = iova / PAGE;
    const end = first + pages;
    switch (this.mode) {
      case 'type1-perpetual':
        for (const m of this.#mappings) {
          const lo = Math.max(m.iova / PAGE, first);
          const hi = Math.min((m.iova + m.length) / PAGE, end);
          if (lo < hi) setPageBits(bitmap, lo - first, hi - lo);
        }
        return;
      case 'type1-pinned':
        takePages(this.#pinnedSinceReport, first, end, bitmap);
        for (const page of this.#pins.keys()) {
          if (page >= first && page < end) setPageBits(bitmap, page - first, 1);
        }
        return;
      case 'iommufd':
        takePages(this.#written, first, end, bitmap);
        return;
      case 'none':
        return;
    }
  }

  // ---- what the DMA view uses ------------------------------------------------------------

  /** Every GPA piece of [iova, iova+length), or an IOMMU fault when some IOVA is unmapped. */
  eachPiece(
    iova: number,
    length: number,
    what: string,
    fn: (gpa: number, pos: number, n: number) => void,
  ): void {
    let pos = 0;
    while (pos < length) {
      const m = this.#find(iova + pos);
      if (m === undefined) {
        this.faults++;
        throw new RangeError(`IOMMU fault: ${what} at IOVA ${hex(iova + pos)} is not mapped`);
      }
      const off = iova + pos - m.iova;
      const n = Math.min(length - pos, m.length - off);
      fn(m.gpa + off, pos, n);
      pos += n;
    }
  }

  /** The IOMMU saw a DMA write to [iova, iova+length) (iommufd's dirty bits). */
  noteWrite(iova: number, length: number): void {
    if (!this.#tracking || this.mode !== 'iommufd') return;
    const last = Math.floor((iova + length - 1) / PAGE);
    for (let p = Math.floor(iova / PAGE); p <= last; p++) this.#written.add(p);
  }

  /** vfio_pin_pages: the vendor driver pins [iova, iova+length); it must be mapped. */
  pin(iova: number, length: number): void {
    this.eachPiece(iova, length, 'pin', () => undefined);
    const last = Math.floor((iova + length - 1) / PAGE);
    for (let p = Math.floor(iova / PAGE); p <= last; p++) {
      this.#pins.set(p, (this.#pins.get(p) ?? 0) + 1);
      if (this.#tracking) this.#pinnedSinceReport.add(p);
    }
  }

  /** vfio_unpin_pages. Pages dropped by an unmap meanwhile are ignored. */
  unpin(iova: number, length: number): void {
    const last = Math.floor((iova + length - 1) / PAGE);
    for (let p = Math.floor(iova / PAGE); p <= last; p++) {
      const n = this.#pins.get(p);
      if (n === undefined) continue;
      if (n <= 1) this.#pins.delete(p);
      else this.#pins.set(p, n - 1);
    }
  }

  /** Pages pinned right now (statistics). */
  get pinnedPages(): number {
    return this.#pins.size;
  }

  #find(iova: number): IommuMapping | undefined {
    for (const m of this.#mappings) {
      if (iova < m.iova) return undefined;
      if (iova < m.iova + m.length) return m;
    }
    return undefined;
  }

  #forgetPages(iova: number, length: number): void {
    const first = iova / PAGE;
    const end = first + length / PAGE;
    for (const set of [this.#written, this.#pinnedSinceReport]) {
      for (const p of set) if (p >= first && p < end) set.delete(p);
    }
    for (const p of this.#pins.keys()) if (p >= first && p < end) this.#pins.delete(p);
  }
}

/** Moves the pages of `set` in [first, end) into `bitmap` (bit 0 = page `first`). */
function takePages(set: Set<number>, first: number, end: number, bitmap: Uint8Array): void {
  for (const p of set) {
    if (p < first || p >= end) continue;
    setPageBits(bitmap, p - first, 1);
    set.delete(p);
  }
}

/** Device DMA through the container: translated, faulting on unmapped IOVAs, observed. */
class IommuDmaView implements DmaMemory {
  readonly #c: IommuContainer;

  constructor(container: IommuContainer) {
    this.#c = container;
  }

  get regions(): readonly { iova: number; length: number }[] {
    return this.#c.mappings;
  }

  write(iova: number, data: Uint8Array): void {
    const c = this.#c;
    c.eachPiece(iova, data.length, 'DMA write', () => undefined);
    c.eachPiece(iova, data.length, 'DMA write', (gpa, pos, n) => {
      c.memory.write(gpa, pos === 0 && n === data.length ? data : data.subarray(pos, pos + n));
    });
    c.noteWrite(iova, data.length);
  }

  read(iova: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.#c.eachPiece(iova, length, 'DMA read', (gpa, pos, n) => {
      out.set(this.#c.memory.read(gpa, n), pos);
    });
    return out;
  }
}

/** The view of a `type1-pinned` container: devices pin what they DMA to (sim's dma.ts). */
class PinningDmaView extends IommuDmaView {
  readonly #c: IommuContainer;

  constructor(container: IommuContainer) {
    super(container);
    this.#c = container;
  }

  pinPages(iova: number, length: number): void {
    this.#c.pin(iova, length);
  }

  unpinPages(iova: number, length: number): void {
    this.#c.unpin(iova, length);
  }
}
