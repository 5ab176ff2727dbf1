/** A migration stream saved in a file (QMP `migrate file:PATH[,offset=N]`, or `exec:cat > FILE`). */
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { QEMUFileReader } from '../migration/stream/index.ts';
import { inspectStream } from './decode.ts';
import type { InspectReport } from './report.ts';

export interface InspectFileOptions {
  /** Where the stream starts in the file (file:PATH,offset=N); report offsets count from there. */
  offset?: number;
}

const FILE_HIGH_WATER_MARK = 1 << 20;

/** Decodes the stream in `path`. Throws only when the file cannot be opened. */
export async function inspectFile(
  path: string,
  options: InspectFileOptions = {},
): Promise<InspectReport> {
  const start = options.offset ?? 0;
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new RangeError(`stream offset ${start} is not a non-negative integer`);
  }
  const stream = createReadStream(path, { start, highWaterMark: FILE_HIGH_WATER_MARK });
  try {
    await once(stream, 'open');
  } catch (err) {
    throw new Error(`cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  const reader = new QEMUFileReader(stream);
  try {
    return await inspectStream(reader);
  } finally {
    // Decoding may stop early (bad input): release the file either way.
    reader.close();
    stream.destroy();
  }
}
