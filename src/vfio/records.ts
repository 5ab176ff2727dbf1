/**
 * The VFIO sub-stream inside a device's sections (qemu-migration.md §1.3–§1.5): big-endian
 * u64 delimiters, data records `DEV_DATA_STATE, u64 size, size bytes`, and the copy of a data
 * record's payload into the resuming data fd. Nothing here knows about device states; the
 * hooks in migration.ts decide what to write when.
 */
import type { DataFd } from '../device/device.ts';
import {
  VFIO_MIG_FLAG_DEV_DATA_STATE,
  badInput,
  isStreamError,
  vfioMigFlagName,
} from '../migration/stream/index.ts';
import type { QEMUFileReader, QEMUFileWriter } from '../migration/stream/index.ts';

/** `DEV_DATA_STATE, u64 n, n bytes` for the device data in `data` (n > 0). */
export function putDataRecord(f: QEMUFileWriter, data: Uint8Array): void {
  f.putBe64(VFIO_MIG_FLAG_DEV_DATA_STATE);
  f.putBe64(data.length);
  f.putBuffer(data);
}

/** A lone delimiter: END_OF_STATE, DEV_INIT_DATA_SENT, DEV_CONFIG_LOAD_READY... */
export function putFlag(f: QEMUFileWriter, flag: bigint): void {
  f.putBe64(flag);
}

/** "DEV_DATA_STATE", or the hex of a u64 that is no VFIO delimiter. */
export function tagName(tag: bigint): string {
  return vfioMigFlagName(tag) ?? `0x${tag.toString(16)}`;
}

/**
 * Reads the next delimiter. A truncated section is reported as a StreamError naming the device
 * and what was expected.
 */
export async function readTag(f: QEMUFileReader, device: string, what: string): Promise<bigint> {
  return withDevice(device, () => f.getBe64(what));
}

/** Reads the u64 size of a DEV_DATA_STATE record; refuses sizes that are not exact numbers. */
export async function readDataSize(f: QEMUFileReader, device: string): Promise<number> {
  const at = f.offset;
  const size = await readTag(f, device, 'DEV_DATA_STATE size');
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw badInput(at, `VFIO device ${device}: DEV_DATA_STATE size`, `${size} is beyond 2^53`);
  }
  return Number(size);
}

/**
 * `qemu_file_get_to_fd`: moves `size` bytes from the channel into the resuming fd through
 * `buf`, one bounded chunk at a time, so a record of any size costs no more memory than `buf`.
 */
export async function getToFd(
  f: QEMUFileReader,
  fd: DataFd,
  size: number,
  buf: Uint8Array,
  device: string,
): Promise<void> {
  let left = size;
  while (left > 0) {
    const n = Math.min(left, buf.length);
    const chunk = n === buf.length ? buf : buf.subarray(0, n);
    await withDevice(device, () => f.readInto(chunk, 'DEV_DATA_STATE data'));
    await writeToFd(fd, chunk, device);
    left -= n;
  }
}

/**
 * Writes all of `buf` into the resuming fd: a short write is continued, a write that accepts
 * nothing is an error.
 */
export async function writeToFd(fd: DataFd, buf: Uint8Array, device: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await fd.write(done === 0 ? buf : buf.subarray(done));
    if (n <= 0) throw new Error(`${device}: the resuming data fd accepted no bytes`);
    done += n;
  }
}

/** Runs a read; a StreamError gains the device's name, anything else passes through. */
async function withDevice<T>(device: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    throw isStreamError(err) ? err.withContext(`VFIO device ${device}`) : err;
  }
}
