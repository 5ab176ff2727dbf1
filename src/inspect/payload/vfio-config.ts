/**
 * The device config blob after VFIO_MIG_FLAG_DEV_CONFIG_STATE (qemu-migration.md §1.4,
 * `save_state`), framed as the VFIO layer frames it (src/vfio/config-state.ts): the vmstate
 * "VFIOPCIDevice" v1 with a single u32-counted buffer holding the emulated config space, no
 * subsections. Skipped here under the VFIO layer's own bound.
 */
import { skipVBuffer } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';
import { VFIO_PCI_CONFIG_MAX, VFIO_PCI_CONFIG_VMSD_NAME } from '../../vfio/config-state.ts';

/** Skips one config blob; returns its size in bytes. */
export function skipVfioConfigBlob(r: QEMUFileReader): Promise<number> {
  return skipVBuffer(r, `${VFIO_PCI_CONFIG_VMSD_NAME} config`, VFIO_PCI_CONFIG_MAX);
}
