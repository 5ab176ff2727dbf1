/**
 * Guest-physical layouts: where RAM blocks appear in the guest's address space. QEMU maps a
 * block into the system address space through MemoryRegion aliases; for the i440fx "pc"
 * machine the single block "pc.ram" is split into "ram-below-4g" at GPA 0 and "ram-above-4g"
 * at 4 GiB (hw/i386/pc_piix.c: the traditional split is 3.5 GiB, moved down to 3 GiB when RAM
 * does not fit below it, so that guest and host 1 GiB pages line up).
 */
import { GiB } from './page.ts';

/** A window of guest-physical space backed by `length` bytes of a block from `offset`. */
export interface RamMappingSpec {
  /** Name for messages, e.g. "ram-below-4g". Defaults to the block's idstr. */
  readonly name?: string;
  readonly gpa: number;
  /** idstr of the block. */
  readonly block: string;
  readonly offset: number;
  readonly length: number;
}

export interface RamBlockSpec {
  readonly idstr: string;
  /** Bytes, a multiple of the target page. */
  readonly size: number;
}

export interface Layout {
  readonly blocks: readonly RamBlockSpec[];
  readonly mappings: readonly RamMappingSpec[];
}

/** `max-ram-below-4g` default of the pc machines: the traditional 3.5 GiB split. */
export const PC_MAX_RAM_BELOW_4G = 0xe000_0000;
/** The split used when RAM reaches the traditional one (`gigabyte_align`). */
export const PC_GIGABYTE_ALIGNED_BELOW_4G = 0xc000_0000;
export const FOUR_GIB = 4 * GiB;

/** The "pc" machine layout for `ramSize` bytes of RAM in one block "pc.ram". */
export function pcLayout(ramSize: number): Layout {
  const below = ramSize >= PC_MAX_RAM_BELOW_4G ? PC_GIGABYTE_ALIGNED_BELOW_4G : ramSize;
  const mappings: RamMappingSpec[] = [
    { name: 'ram-below-4g', gpa: 0, block: 'pc.ram', offset: 0, length: below },
  ];
  if (ramSize > below) {
    mappings.push({
      name: 'ram-above-4g',
      gpa: FOUR_GIB,
      block: 'pc.ram',
      offset: below,
      length: ramSize - below,
    });
  }
  return { blocks: [{ idstr: 'pc.ram', size: ramSize }], mappings };
}

/**
 * Each block mapped whole at its own base. A block without `gpa` follows the previous one
 * (the first starts at 0).
 */
export function flatLayout(blocks: readonly (RamBlockSpec & { gpa?: number })[]): Layout {
  let next = 0;
  const mappings = blocks.map((b) => {
    const gpa = b.gpa ?? next;
    next = gpa + b.size;
    return { gpa, block: b.idstr, offset: 0, length: b.size };
  });
  return { blocks: blocks.map(({ idstr, size }) => ({ idstr, size })), mappings };
}
