/**
 * The device config blob inside `DEV_CONFIG_STATE ... END_OF_STATE` (qemu-migration.md §1.4).
 *
 * QEMU writes the vmstate "VFIOPCIDevice" version 1 there: the emulated PCI device, MSI-X, an
 * optional ramfb subsection. A vmstate carries no length and no end marker — the loader knows
 * each field's size and peeks for QEMU_VM_SUBSECTION (0x05) after the fields. Our device
 * emulation hands us its config as one opaque blob (`saveConfig()`), so our "VFIOPCIDevice" v1
 * has a single field, a u32-counted buffer (vmstate's VBUFFER_UINT32 encoding):
 *
 *   u32 length | length bytes of saveConfig() | [subsections: none defined]
 *
 * The length is bounded before anything is allocated; a subsection (none is defined) is refused
 * by name like an unknown vmstate subsection.
 */
import type { QEMUFileReader, QEMUFileWriter } from '../migration/stream/index.ts';
import {
  QEMU_VM_SUBSECTION,
  badInput,
  getVBuffer,
  isStreamError,
  putVBuffer,
  readSubsectionHeader,
} from '../migration/stream/index.ts';

export const VFIO_PCI_CONFIG_VMSD_NAME = 'VFIOPCIDevice';
export const VFIO_PCI_CONFIG_VMSD_VERSION = 1;
/** Largest config blob accepted: far above a 4 KiB config space plus a 2048-entry MSI-X table. */
export const VFIO_PCI_CONFIG_MAX = 1 << 20;

export function putVfioPciConfig(f: QEMUFileWriter, blob: Uint8Array, device: string): void {
  putVBuffer(f, blob, `${device}: config blob`, VFIO_PCI_CONFIG_MAX);
}

export async function getVfioPciConfig(f: QEMUFileReader, device: string): Promise<Uint8Array> {
  const what = `${VFIO_PCI_CONFIG_VMSD_NAME} config`;
  try {
    const blob = await getVBuffer(f, what, VFIO_PCI_CONFIG_MAX);
    // vmstate_subsection_load: peek for a subsection marker (END_OF_STATE starts with 0xff).
    if ((await f.peekU8(`${what} end`)) === QEMU_VM_SUBSECTION) {
      const at = f.offset;
      const sub = await readSubsectionHeader(f, VFIO_PCI_CONFIG_VMSD_NAME);
      throw badInput(at, what, `unknown subsection '${sub.name}' version ${sub.versionId}`);
    }
    return blob;
  } catch (err) {
    throw isStreamError(err) ? err.withContext(`VFIO device ${device}`) : err;
  }
}
