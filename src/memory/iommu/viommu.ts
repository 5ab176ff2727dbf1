/**
 * A guest-visible IOMMU (vIOMMU, e.g. intel-iommu): the guest's driver maps IOVA ranges of
 * the VFIO devices' DMA domain onto guest RAM and unmaps them again; each change is an IOTLB
 * event told to the notifiers (QEMU's IOMMU_NOTIFIER_MAP / _UNMAP), and `replay` walks the
 * current mappings (`memory_region_iommu_replay`). The VFIO layer mirrors the mappings into the
 * host container and, during a migration, reads the dirty bits of a range before it goes
 * (qemu-migration.md §3.5, "vIOMMU path").
 *
 * One domain serves every VFIO device of the VM (as devices behind one IOMMU group). The
 * mappings are guest state: `save` / `load` carry them in the migration stream.
 */
import { fail } from '../../uapi/index.ts';
import type { GuestMemory } from '../guest-memory.ts';
import { hex } from '../page.ts';
import { IOMMU_PAGE_SIZE } from './container.ts';
import type { IommuMapping } from './container.ts';

/** An IOTLB event: a range and where it translates to (`IOMMUTLBEntry`). */
export type IommuTlbEntry = IommuMapping;

export interface IommuNotifier {
  /** A range became mapped (IOMMU_NOTIFIER_MAP). */
  map?(entry: IommuTlbEntry): void;
  /** A range is being unmapped; `entry.gpa` is what it translated to (IOMMU_NOTIFIER_UNMAP). */
  unmap?(entry: IommuTlbEntry): void;
}

/** Version of the `save` layout. */
export const VIOMMU_STATE_VERSION = 1;
/** Most mappings a saved state may hold (bounds the allocation on load). */
export const VIOMMU_MAX_MAPPINGS = 1 << 16;
/** The savevm entry the state travels in (a FULL section, one VBUFFER_UINT32 of `save()`). */
export const VIOMMU_SECTION_IDSTR = 'viommu';
export const VIOMMU_SECTION_VERSION = 1;
export const VIOMMU_STATE_MAX_BYTES = 8 + VIOMMU_MAX_MAPPINGS * 24;

/** The number of mappings a saved state holds (for analysis tools), or null if malformed. */
export function viommuStateMappings(bytes: Uint8Array): number | null {
  if (bytes.length < 8) return null;
  const count = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4, true);
  return bytes.length === 8 + count * 24 ? count : null;
}

export class GuestIommu {
  readonly memory: GuestMemory;
  /** Sorted by IOVA, non-overlapping. */
  #mappings: IommuMapping[] = [];
  readonly #notifiers: IommuNotifier[] = [];

  constructor(memory: GuestMemory) {
    this.memory = memory;
  }

  get mappings(): readonly IommuMapping[] {
    return this.#mappings;
  }

  addNotifier(n: IommuNotifier): () => void {
    this.#notifiers.push(n);
    return () => {
      const i = this.#notifiers.indexOf(n);
      if (i >= 0) this.#notifiers.splice(i, 1);
    };
  }

  /** The guest maps [iova, iova+length) onto guest RAM at `gpa`, then invalidates the IOTLB. */
  map(iova: number, length: number, gpa: number): void {
    if (
      ![iova, length, gpa].every(
        (v) => Number.isSafeInteger(v) && v >= 0 && v % IOMMU_PAGE_SIZE === 0,
      ) ||
      length === 0
    ) {
      fail('EINVAL', `vIOMMU map: ${hex(iova)}+${hex(length)} -> ${hex(gpa)} is not page-aligned`);
    }
    if (this.#mappings.some((m) => m.iova < iova + length && iova < m.iova + m.length)) {
      fail('EINVAL', `vIOMMU map: ${hex(iova)}+${hex(length)} is already mapped`);
    }
    const notRam = this.memory.firstNonRam(gpa, length);
    if (notRam !== undefined) fail('EINVAL', `vIOMMU map: ${hex(notRam)} is not guest RAM`);
    const entry = { iova, length, gpa };
    this.#mappings.push(entry);
    this.#mappings.sort((a, b) => a.iova - b.iova);
    for (const n of [...this.#notifiers]) n.map?.(entry);
  }

  /** The guest unmaps every mapping that starts in [iova, iova+length); returns them. */
  unmap(iova: number, length: number): IommuMapping[] {
    const gone = this.#mappings.filter((m) => m.iova >= iova && m.iova < iova + length);
    for (const entry of gone) {
      // Notified first, while the translation still stands (the dirty bits are read there).
      for (const n of [...this.#notifiers]) n.unmap?.(entry);
      this.#mappings.splice(this.#mappings.indexOf(entry), 1);
    }
    return gone;
  }

  translate(iova: number): number | undefined {
    const m = this.#mappings.find((x) => iova >= x.iova && iova < x.iova + x.length);
    return m === undefined ? undefined : m.gpa + (iova - m.iova);
  }

  /** `memory_region_iommu_replay`: every current mapping, as MAP events to `fn`. */
  replay(fn: (entry: IommuTlbEntry) => void): void {
    for (const m of [...this.#mappings]) fn(m);
  }

  /** The mappings as bytes: le32 version, le32 count, then le64 iova, length, gpa each. */
  save(): Uint8Array {
    const out = new Uint8Array(8 + this.#mappings.length * 24);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, VIOMMU_STATE_VERSION, true);
    dv.setUint32(4, this.#mappings.length, true);
    this.#mappings.forEach((m, i) => {
      dv.setBigUint64(8 + i * 24, BigInt(m.iova), true);
      dv.setBigUint64(16 + i * 24, BigInt(m.length), true);
      dv.setBigUint64(24 + i * 24, BigInt(m.gpa), true);
    });
    return out;
  }

  /**
   * Replaces every mapping with a saved set (unmaps then maps, so notifiers follow). The
   * bytes are checked before anything changes.
   */
  load(bytes: Uint8Array): void {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 8) throw new RangeError(`vIOMMU state: ${bytes.length} bytes, no header`);
    const version = dv.getUint32(0, true);
    if (version !== VIOMMU_STATE_VERSION) {
      throw new RangeError(`vIOMMU state: version ${version}, expected ${VIOMMU_STATE_VERSION}`);
    }
    const count = dv.getUint32(4, true);
    if (count > VIOMMU_MAX_MAPPINGS || bytes.length !== 8 + count * 24) {
      throw new RangeError(
        `vIOMMU state: ${count} mappings do not fit ${bytes.length} bytes (at most ${VIOMMU_MAX_MAPPINGS})`,
      );
    }
    const entries: IommuMapping[] = [];
    for (let i = 0; i < count; i++) {
      const field = (at: number): number => {
        const v = dv.getBigUint64(8 + i * 24 + at, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new RangeError(`vIOMMU state: mapping ${i} has a value beyond 2^53`);
        }
        return Number(v);
      };
      entries.push({ iova: field(0), length: field(8), gpa: field(16) });
    }
    // A copy: unmap empties the live list in place.
    const before = [...this.#mappings];
    this.unmap(0, Number.MAX_SAFE_INTEGER);
    try {
      for (const e of entries) this.map(e.iova, e.length, e.gpa);
    } catch (err) {
      this.unmap(0, Number.MAX_SAFE_INTEGER);
      for (const e of before) this.map(e.iova, e.length, e.gpa);
      throw new RangeError(`vIOMMU state: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  }
}
