/**
 * `file:` migration: the stream goes into a file as is (no return path, one channel).
 * The source writes from `offset`, truncating the file first; the destination reads from it.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { MigrationConnection } from './connection.ts';
import type { MigrationUri } from './uri.ts';

export type FileUri = Extract<MigrationUri, { transport: 'file' }>;

const FILE_HIGH_WATER_MARK = 1 << 20;

export async function openFileForWrite(uri: FileUri): Promise<MigrationConnection> {
  const stream = createWriteStream(uri.path, {
    flags: 'w',
    start: uri.offset,
    highWaterMark: FILE_HIGH_WATER_MARK,
  });
  await openedOrFailed(stream, uri, 'write');
  return new MigrationConnection({
    description: `file ${uri.path} (write)`,
    readable: null,
    writable: stream,
    returnPath: false,
  });
}

export async function openFileForRead(uri: FileUri): Promise<MigrationConnection> {
  const stream = createReadStream(uri.path, {
    start: uri.offset,
    highWaterMark: FILE_HIGH_WATER_MARK,
  });
  await openedOrFailed(stream, uri, 'read');
  return new MigrationConnection({
    description: `file ${uri.path} (read)`,
    readable: stream,
    writable: null,
    returnPath: false,
  });
}

async function openedOrFailed(
  stream: NodeJS.EventEmitter,
  uri: FileUri,
  mode: string,
): Promise<void> {
  try {
    await once(stream, 'open');
  } catch (err) {
    throw new Error(`cannot open ${uri.path} for ${mode}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
