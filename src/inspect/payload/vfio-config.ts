/**
 * The device config blob after VFIO_MIG_FLAG_DEV_CONFIG_STATE (qemu-migration.md §1.4,
 * `save_state`), framed as the VFIO layer frames it (src/vfio/config-state.ts): the vmstate
 * "VFIOPCIDevice" v1 with a single u32-counted buffer holding the emulated config space, no
 * subsections. This is the one place to change if that framing changes.
 */
import { skipVBuffer } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';

/** The VFIO layer's bound on a config blob (VFIO_PCI_CONFIG_MAX). */
export const VFIO_CONFIG_BLOB_MAX = 1 << 20;

/** Skips one config blob; returns its size in bytes. */
export function skipVfioConfigBlob(r: QEMUFileReader): Promise<number> {
  return skipVBuffer(r, 'VFIOPCIDevice config', VFIO_CONFIG_BLOB_MAX);
}
