/**
 * The one piece of generic vmstate encoding the framing needs: subsections
 * (qemu-migration.md §1.1). A subsection is `u8 QEMU_VM_SUBSECTION`, a counted name, a u32
 * version, then its fields. A loader reads subsections while the next byte is
 * QEMU_VM_SUBSECTION, so a vmstate has no end marker of its own.
 */
import { QEMU_VM_SUBSECTION } from './constants.ts';
import { badInput } from './errors.ts';
import { putIdstr, readIdstr } from './idstr.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export interface SubsectionHeader {
  name: string;
  versionId: number;
}

export function putSubsectionHeader(w: QEMUFileWriter, name: string, versionId: number): void {
  w.putU8(QEMU_VM_SUBSECTION);
  putIdstr(w, name, 'subsection name');
  w.putBe32(versionId);
}

/** Whether a subsection follows (peeks one byte; the end of the stream is left to the caller). */
export async function subsectionFollows(r: QEMUFileReader): Promise<boolean> {
  if (await r.atEnd()) return false;
  return (await r.peekU8('subsection marker')) === QEMU_VM_SUBSECTION;
}

/** Reads a subsection header of `parent`, whose name must start with "<parent>/". */
export async function readSubsectionHeader(
  r: QEMUFileReader,
  parent: string,
): Promise<SubsectionHeader> {
  const at = r.offset;
  const marker = await r.getU8('subsection marker');
  if (marker !== QEMU_VM_SUBSECTION) {
    throw badInput(at, `subsection of ${parent}`, `expected 0x05, got 0x${marker.toString(16)}`);
  }
  const name = await readIdstr(r, 'subsection name');
  if (!name.startsWith(`${parent}/`)) {
    throw badInput(at, `subsection of ${parent}`, `'${name}' does not belong to ${parent}`);
  }
  const versionId = await r.getBe32(`subsection ${name} version`);
  return { name, versionId };
}
