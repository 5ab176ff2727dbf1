/**
 * The device config blob after VFIO_MIG_FLAG_DEV_CONFIG_STATE (qemu-migration.md §1.4,
 * `save_state`). QEMU writes the VFIOPCIDevice vmstate there; our VFIO layer frames the
 * emulated config space itself. Until that framing is final it is read as a u32 big-endian
 * length and that many bytes — this is the one place to change when it is.
 */
import { badInput } from '../../migration/stream/index.ts';
import type { QEMUFileReader } from '../../migration/stream/index.ts';

/** A config blob is the emulated config space plus MSI-X state: far below this. */
export const VFIO_CONFIG_BLOB_MAX = 16 << 20;

/** Skips one config blob; returns its size in bytes. */
export async function skipVfioConfigBlob(r: QEMUFileReader): Promise<number> {
  const at = r.offset;
  const size = await r.getBe32('VFIO config blob length');
  if (size > VFIO_CONFIG_BLOB_MAX) {
    throw badInput(at, 'VFIO config blob', `length ${size} exceeds ${VFIO_CONFIG_BLOB_MAX}`);
  }
  await r.skip(size, `VFIO config blob (${size} bytes from offset ${at + 4})`);
  return size;
}
