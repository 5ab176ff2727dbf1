/**
 * Main-channel framing constants (qemu-migration.md §1.1). All integers on the wire are
 * big-endian.
 */

/** "QEVM": the first four bytes of every main channel. */
export const QEMU_VM_FILE_MAGIC = 0x5145564d;
/** The only version accepted. */
export const QEMU_VM_FILE_VERSION = 0x00000003;
/** The pre-2012 format; refused as obsolete. */
export const QEMU_VM_FILE_VERSION_COMPAT = 0x00000002;

/** Section-level type bytes. */
export const QEMU_VM_EOF = 0x00;
export const QEMU_VM_SECTION_START = 0x01;
export const QEMU_VM_SECTION_PART = 0x02;
export const QEMU_VM_SECTION_END = 0x03;
export const QEMU_VM_SECTION_FULL = 0x04;
/** Only inside vmstate encodings (e.g. the configuration section). */
export const QEMU_VM_SUBSECTION = 0x05;
export const QEMU_VM_VMDESCRIPTION = 0x06;
export const QEMU_VM_CONFIGURATION = 0x07;
export const QEMU_VM_COMMAND = 0x08;
export const QEMU_VM_SECTION_FOOTER = 0x7e;

export type SectionType =
  | typeof QEMU_VM_EOF
  | typeof QEMU_VM_SECTION_START
  | typeof QEMU_VM_SECTION_PART
  | typeof QEMU_VM_SECTION_END
  | typeof QEMU_VM_SECTION_FULL
  | typeof QEMU_VM_COMMAND;

const SECTION_TYPE_NAMES: Readonly<Record<number, string>> = {
  [QEMU_VM_EOF]: 'QEMU_VM_EOF',
  [QEMU_VM_SECTION_START]: 'QEMU_VM_SECTION_START',
  [QEMU_VM_SECTION_PART]: 'QEMU_VM_SECTION_PART',
  [QEMU_VM_SECTION_END]: 'QEMU_VM_SECTION_END',
  [QEMU_VM_SECTION_FULL]: 'QEMU_VM_SECTION_FULL',
  [QEMU_VM_SUBSECTION]: 'QEMU_VM_SUBSECTION',
  [QEMU_VM_VMDESCRIPTION]: 'QEMU_VM_VMDESCRIPTION',
  [QEMU_VM_CONFIGURATION]: 'QEMU_VM_CONFIGURATION',
  [QEMU_VM_COMMAND]: 'QEMU_VM_COMMAND',
  [QEMU_VM_SECTION_FOOTER]: 'QEMU_VM_SECTION_FOOTER',
};

/** "QEMU_VM_SECTION_PART", or "0x42" for a byte that is no section type. */
export function sectionTypeName(type: number): string {
  return SECTION_TYPE_NAMES[type] ?? `0x${type.toString(16).padStart(2, '0')}`;
}
