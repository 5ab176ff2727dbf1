/**
 * Section framing (qemu-migration.md §1.1):
 * - START / FULL: `u8 type, u32 section_id, u8 idlen, idstr, u32 instance_id, u32 version_id`
 * - PART / END:   `u8 type, u32 section_id`
 * - footer:       `u8 0x7e, u32 section_id`, checked by the loader after every section
 * - EOF:          `u8 0x00`
 * The payload between header and footer belongs to the entry's handler and has no length.
 */
import {
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FOOTER,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  sectionTypeName,
} from './constants.ts';
import type { SectionType } from './constants.ts';
import { badInput } from './errors.ts';
import { putIdstr, readIdstr } from './idstr.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

/** Header of a START or FULL section: it names the entry. */
export interface SectionStartHeader {
  type: typeof QEMU_VM_SECTION_START | typeof QEMU_VM_SECTION_FULL;
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
}

/** Header of a PART or END section: the entry is the one bound by its START. */
export interface SectionPartHeader {
  type: typeof QEMU_VM_SECTION_PART | typeof QEMU_VM_SECTION_END;
  sectionId: number;
}

export type SectionHeader = SectionStartHeader | SectionPartHeader;

export function putSectionHeader(w: QEMUFileWriter, h: SectionHeader): void {
  w.putU8(h.type);
  w.putBe32(h.sectionId);
  if (h.type === QEMU_VM_SECTION_START || h.type === QEMU_VM_SECTION_FULL) {
    putIdstr(w, h.idstr, 'section idstr');
    w.putBe32(h.instanceId);
    w.putBe32(h.versionId);
  }
}

export function putSectionFooter(w: QEMUFileWriter, sectionId: number): void {
  w.putU8(QEMU_VM_SECTION_FOOTER);
  w.putBe32(sectionId);
}

export function putEof(w: QEMUFileWriter): void {
  w.putU8(QEMU_VM_EOF);
}

const SECTION_LEVEL_TYPES: ReadonlySet<number> = new Set([
  QEMU_VM_EOF,
  QEMU_VM_SECTION_START,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_COMMAND,
]);

/** The next top-level item: a section, a command or EOF. Anything else is refused. */
export async function readSectionType(r: QEMUFileReader): Promise<SectionType> {
  const at = r.offset;
  const type = await r.getU8('section type');
  if (!SECTION_LEVEL_TYPES.has(type)) {
    throw badInput(at, 'section type', `unknown savevm section type ${sectionTypeName(type)}`);
  }
  return type as SectionType;
}

/** The rest of a section header, after readSectionType() returned START/FULL/PART/END. */
export async function readSectionHeader(
  r: QEMUFileReader,
  type: SectionHeader['type'],
): Promise<SectionHeader> {
  const sectionId = await r.getBe32('section id');
  if (type === QEMU_VM_SECTION_PART || type === QEMU_VM_SECTION_END) return { type, sectionId };
  const idstr = await readIdstr(r, 'section idstr');
  const instanceId = await r.getBe32('section instance id');
  const versionId = await r.getBe32('section version id');
  return { type, sectionId, idstr, instanceId, versionId };
}

/** Checks the footer of section `expectedSectionId` (`name` only words the error). */
export async function readSectionFooter(
  r: QEMUFileReader,
  expectedSectionId: number,
  name = `section ${expectedSectionId}`,
): Promise<void> {
  const at = r.offset;
  const marker = await r.getU8('section footer');
  if (marker !== QEMU_VM_SECTION_FOOTER) {
    throw badInput(
      at,
      'section footer',
      `missing section footer for ${name} (got byte 0x${marker.toString(16)})`,
    );
  }
  const id = await r.getBe32('section footer id');
  if (id !== expectedSectionId) {
    throw badInput(
      at,
      'section footer',
      `mismatched section id in footer for ${name}: read ${id}, expected ${expectedSectionId}`,
    );
  }
}
