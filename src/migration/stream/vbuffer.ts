/**
 * vmstate's VBUFFER_UINT32 encoding — `u32 length` then that many bytes — for payloads that
 * are one opaque buffer (our VFIOPCIDevice config, the vIOMMU state). The length is checked
 * against a cap before anything is allocated.
 */
import { badInput } from './errors.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export function putVBuffer(w: QEMUFileWriter, bytes: Uint8Array, what: string, max: number): void {
  if (bytes.length > max) {
    throw new Error(`${what}: ${bytes.length} bytes exceed the ${max}-byte limit`);
  }
  w.putBe32(bytes.length);
  w.putBuffer(bytes);
}

async function readLength(r: QEMUFileReader, what: string, max: number): Promise<number> {
  const at = r.offset;
  const length = await r.getBe32(`${what} length`);
  if (length > max) throw badInput(at, what, `length ${length} exceeds the limit of ${max}`);
  return length;
}

export async function getVBuffer(
  r: QEMUFileReader,
  what: string,
  max: number,
): Promise<Uint8Array> {
  const length = await readLength(r, what, max);
  return r.getBytes(length, what, max);
}

/** Skips one buffer (decoders that only count); returns its length. */
export async function skipVBuffer(r: QEMUFileReader, what: string, max: number): Promise<number> {
  const length = await readLength(r, what, max);
  await r.skip(length, what);
  return length;
}
