/** Test helper: pushes `bytes` into a reader in chunks cycling through `sizes`, then ends it. */
import type { QEMUFileReader } from '../../../src/migration/stream/index.ts';

export async function feedInChunks(
  r: QEMUFileReader,
  bytes: Uint8Array,
  sizes: readonly number[],
): Promise<void> {
  let i = 0;
  for (let at = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    r.push(bytes.subarray(at, at + n));
    at += n;
    // Let the decoder run between chunks so reads really wait for bytes.
    if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  r.end();
}
