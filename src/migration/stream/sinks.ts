/** ByteSink implementations: any Writable (a socket, a file stream), a file path, memory. */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ByteSink } from './writer.ts';

/**
 * A sink over a Writable. A chunk is released when its write callback runs (the bytes were
 * handed to the kernel). An 'error' or an early 'close' fails every later write instead of
 * crashing the process with an unhandled 'error' event.
 */
export function writableSink(stream: Writable): ByteSink {
  let failure: Error | undefined;
  stream.on('error', (err: Error) => {
    failure ??= err;
  });
  stream.once('close', () => {
    if (!stream.writableFinished) failure ??= new Error('the channel was closed');
  });
  return {
    write(chunk: Uint8Array): Promise<void> {
      if (failure !== undefined) return Promise.reject(failure);
      return new Promise<void>((resolve, reject) => {
        stream.write(chunk, (err) => {
          if (err) reject(err);
          else resolve();
        });
      });
    },
    async close(): Promise<void> {
      if (failure !== undefined) throw failure;
      if (stream.writableEnded) return;
      stream.end();
      // A socket stays readable after end() (half-close): only wait for 'finish'.
      await finished(stream, { readable: false });
    },
  };
}

/** A sink writing a file from `start` (default 0); the file is created or truncated. */
export function fileSink(path: string, start = 0): ByteSink {
  const stream = createWriteStream(path, { flags: 'w', start, highWaterMark: 1 << 20 });
  const sink = writableSink(stream);
  return {
    write: (chunk) => sink.write(chunk),
    async close(): Promise<void> {
      await sink.close();
      if (!stream.closed)
        await new Promise<void>((resolve) => stream.once('close', () => resolve()));
    },
  };
}

/** Collects everything written, for tests and in-memory encoding. */
export class MemorySink implements ByteSink {
  private readonly parts: Buffer[] = [];
  private length = 0;
  closed = false;

  write(chunk: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new Error('MemorySink: write after close'));
    this.parts.push(Buffer.from(chunk));
    this.length += chunk.length;
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  get size(): number {
    return this.length;
  }

  /** Everything written so far, as one buffer. */
  bytes(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}
