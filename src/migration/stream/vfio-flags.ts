/**
 * Delimiters of a VFIO device's sub-stream inside its own sections (qemu-migration.md §1.3).
 * Each is one u64: the high 32 bits all ones, then the magic 0xef10, then a 16-bit code. They
 * do not fit a JavaScript number exactly, hence bigint.
 */
export const VFIO_MIG_FLAG_END_OF_STATE = 0xffffffffef100001n;
export const VFIO_MIG_FLAG_DEV_CONFIG_STATE = 0xffffffffef100002n;
export const VFIO_MIG_FLAG_DEV_SETUP_STATE = 0xffffffffef100003n;
export const VFIO_MIG_FLAG_DEV_DATA_STATE = 0xffffffffef100004n;
/** Since QEMU 8.1: precopy "initial bytes" fully sent (switchover-ack). */
export const VFIO_MIG_FLAG_DEV_INIT_DATA_SENT = 0xffffffffef100005n;
/** Since QEMU 10.1, multifd mode: the destination may now load the config. */
export const VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY = 0xffffffffef100006n;

const VFIO_MIG_FLAG_NAMES = new Map<bigint, string>([
  [VFIO_MIG_FLAG_END_OF_STATE, 'END_OF_STATE'],
  [VFIO_MIG_FLAG_DEV_CONFIG_STATE, 'DEV_CONFIG_STATE'],
  [VFIO_MIG_FLAG_DEV_SETUP_STATE, 'DEV_SETUP_STATE'],
  [VFIO_MIG_FLAG_DEV_DATA_STATE, 'DEV_DATA_STATE'],
  [VFIO_MIG_FLAG_DEV_INIT_DATA_SENT, 'DEV_INIT_DATA_SENT'],
  [VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY, 'DEV_CONFIG_LOAD_READY'],
]);

/** "DEV_DATA_STATE", or undefined for a u64 that is no VFIO delimiter. */
export function vfioMigFlagName(tag: bigint): string | undefined {
  return VFIO_MIG_FLAG_NAMES.get(tag);
}
