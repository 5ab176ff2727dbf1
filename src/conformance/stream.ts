/** Reading and writing whole device streams through a data fd, for the checks. */
import { MigState, VFIO_MIGRATION_PRE_COPY, isVfioError } from '../uapi/index.ts';
import type { DataFd, VfioMigrationDevice } from '../device/device.ts';
import { CheckFailure, expect } from './check.ts';
import { setOk, setWithFd } from './expect.ts';

/** Bytes a session may deliver before a check calls it endless. */
export async function streamBudget(dev: VfioMigrationDevice): Promise<number> {
  return 16 * (await dev.stopCopySize()) + (16 << 20);
}

export interface DrainResult {
  bytes: Uint8Array[];
  total: number;
  /** How the read loop ended. */
  end: 'eof' | 'enomsg';
}

/**
 * Reads until a temporary end (ENOMSG, PRE_COPY) or the end of the stream (0, STOP_COPY).
 * `limit` bounds the bytes read, so a device that never ends fails instead of hanging.
 */
export async function drain(fd: DataFd, limit: number, bufSize = 64 * 1024): Promise<DrainResult> {
  const bytes: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buf = new Uint8Array(bufSize);
    let n: number;
    try {
      n = await fd.read(buf);
    } catch (err) {
      if (isVfioError(err, 'ENOMSG')) return { bytes, total, end: 'enomsg' };
      throw err;
    }
    if (n === 0) return { bytes, total, end: 'eof' };
    if (!Number.isInteger(n) || n < 0 || n > buf.length) {
      throw new CheckFailure(`read returned ${n} for a ${buf.length}-byte buffer`);
    }
    bytes.push(buf.subarray(0, n));
    total += n;
    if (total > limit) throw new CheckFailure(`stream did not end within ${limit} bytes`);
  }
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes `data` in chunks of random sizes, as a VMM may (vfio-uapi.md §2: chunking is free). */
export async function writeChunked(
  fd: DataFd,
  data: Uint8Array,
  random: () => number,
  maxChunk = 8192,
): Promise<void> {
  let at = 0;
  while (at < data.length) {
    const len = Math.min(data.length - at, 1 + Math.floor(random() * maxChunk));
    let off = 0;
    while (off < len) {
      const n = await fd.write(data.subarray(at + off, at + len));
      if (n <= 0) throw new CheckFailure(`write accepted ${n} bytes`);
      off += n;
    }
    at += len;
  }
}

/** Saves a whole device state the way QEMU does: pre-copy first when the device has it. */
export async function saveState(dev: VfioMigrationDevice, flags: number): Promise<Uint8Array> {
  const limit = await streamBudget(dev);
  const parts: Uint8Array[] = [];
  if (flags & VFIO_MIGRATION_PRE_COPY) {
    const fd = await setWithFd(dev, MigState.PRE_COPY);
    parts.push(...(await drain(fd, limit)).bytes);
    expect((await setOk(dev, MigState.STOP_COPY)) === null, 'PRE_COPY -> STOP_COPY opened an fd');
    parts.push(...(await drain(fd, limit)).bytes);
  } else {
    const fd = await setWithFd(dev, MigState.STOP_COPY);
    parts.push(...(await drain(fd, limit)).bytes);
  }
  return concat(parts);
}
