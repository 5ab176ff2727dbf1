/**
 * Counted strings as QEMU writes them: `u8 len` then `len` bytes, no terminator. Used for
 * section idstrs, RAM block names, subsection and capability names. Bytes map 1:1 to
 * characters (latin1), so any byte string round-trips and decoding never throws.
 */
import { badInput } from './errors.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export const IDSTR_MAX = 255;

/** Encodes `s` as latin1 bytes, refusing what does not fit a u8-counted string. */
export function idstrBytes(s: string, what = 'idstr'): Buffer {
  const bytes = Buffer.from(s, 'latin1');
  if (bytes.length > IDSTR_MAX || bytes.toString('latin1') !== s) {
    throw new RangeError(`${what} '${s}' is not a string of at most ${IDSTR_MAX} latin1 bytes`);
  }
  return bytes;
}

export function putIdstr(w: QEMUFileWriter, s: string, what = 'idstr'): void {
  const bytes = idstrBytes(s, what);
  w.putU8(bytes.length);
  w.putBuffer(bytes);
}

export async function readIdstr(r: QEMUFileReader, what = 'idstr'): Promise<string> {
  const len = await r.getU8(`${what} length`);
  const bytes = await r.getBytes(len, what, IDSTR_MAX);
  return bytes.toString('latin1');
}

/** A counted string inside an already-read buffer (return-path and command payloads). */
export function idstrAt(buf: Uint8Array, at: number, offset: number, what: string): string {
  const len = buf[at];
  if (len === undefined || at + 1 + len > buf.length) {
    throw badInput(offset, what, `counted string overruns its ${buf.length}-byte message`);
  }
  return Buffer.from(buf.buffer, buf.byteOffset + at + 1, len).toString('latin1');
}
