/** Test helper: runs `put` against a writer over memory and returns the bytes. */
import { MemorySink, QEMUFileReader, QEMUFileWriter } from '../../../src/migration/stream/index.ts';

export async function encode(put: (w: QEMUFileWriter) => void): Promise<Buffer> {
  const sink = new MemorySink();
  const w = new QEMUFileWriter(sink, { chunkSize: 64 });
  put(w);
  await w.flush();
  return sink.bytes();
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** A reader holding exactly `bytes`, ended. */
export function readerOf(bytes: Uint8Array | string): QEMUFileReader {
  const r = new QEMUFileReader();
  r.push(typeof bytes === 'string' ? Buffer.from(bytes, 'hex') : bytes);
  r.end();
  return r;
}
