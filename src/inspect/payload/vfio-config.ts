/**
 * The device config blob after VFIO_MIG_FLAG_DEV_CONFIG_STATE (qemu-migration.md §1.4,
 * `save_state`), framed as the VFIO layer frames it (src/vfio/config-state.ts): the vmstate
 * "VFIOPCIDevice" v1 with a single u32-counted buffer holding the emulated config space, no
 * subsections. This is the one place to change if that framing changes.
 */
import { badInput } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';

/** The VFIO layer's bound on a config blob (VFIO_PCI_CONFIG_MAX). */
export const VFIO_CONFIG_BLOB_MAX = 1 << 20;

/** Skips one config blob; returns its size in bytes. */
export async function skipVfioConfigBlob(r: QEMUFileReader): Promise<number> {
  const at = r.offset;
  const size = await r.getBe32('VFIOPCIDevice config length');
  if (size > VFIO_CONFIG_BLOB_MAX) {
    throw badInput(at, 'VFIOPCIDevice config', `length ${size} exceeds ${VFIO_CONFIG_BLOB_MAX}`);
  }
  await r.skip(size, `VFIOPCIDevice config (${size} bytes from offset ${at + 4})`);
  return size;
}
