/**
 * One migration channel: a connected socket (read and write: the main stream one way, the
 * return path the other) or one direction of a file. The stream codec is opened on top.
 */
import { Duplex } from 'node:stream';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { QEMUFileReader, QEMUFileWriter, writableSink } from '../stream/index.ts';
import type { ReaderOptions, WriterOptions } from '../stream/index.ts';

/**
 * Which channel of a migration a connection is: the main one (the stream and its return
 * path) or multifd channel N (qemu-migration.md §4.3).
 */
export type MigrationChannelId = 'main' | number;

export interface ConnectionParts {
  description: string;
  readable: Readable | null;
  writable: Writable | null;
  /** A socket can carry a return path; a file cannot. */
  returnPath: boolean;
}

export class MigrationConnection {
  /** e.g. "tcp 127.0.0.1:4444 <- 127.0.0.1:53122" or "file /tmp/x (read)". */
  readonly description: string;
  readonly returnPath: boolean;
  readonly readable: Readable | null;
  readonly writable: Writable | null;

  constructor(parts: ConnectionParts) {
    this.description = parts.description;
    this.returnPath = parts.returnPath;
    this.readable = parts.readable;
    this.writable = parts.writable;
  }

  /** The one Duplex carrying both directions (a socket), or null (a file, one direction). */
  get socket(): Duplex | null {
    const s = this.readable;
    return s instanceof Duplex && s === (this.writable as unknown) ? s : null;
  }

  /** A reader on the incoming bytes (the main stream, or the return path on the source). */
  openReader(options?: ReaderOptions): QEMUFileReader {
    if (this.readable === null) throw new Error(`${this.description} cannot be read`);
    return new QEMUFileReader(this.readable, options);
  }

  /** A writer on the outgoing bytes. */
  openWriter(options?: WriterOptions): QEMUFileWriter {
    if (this.writable === null) throw new Error(`${this.description} cannot be written`);
    return new QEMUFileWriter(writableSink(this.writable), options);
  }

  /** Aborts the channel at once (migrate_cancel shuts the channel down). */
  destroy(err?: Error): void {
    this.readable?.destroy(err);
    this.writable?.destroy(err);
  }

  /**
   * Ends what we write, drains what the peer still sends, and waits until both directions
   * are closed — at most `timeoutMs`, after which the channel is destroyed.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.writable !== null && !this.writable.writableEnded) this.writable.end();
    if (this.readable !== null && !this.readable.readableEnded) this.readable.resume();
    const streams = [...new Set([this.readable, this.writable])].filter((s) => s !== null);
    const timeout = AbortSignal.timeout(timeoutMs);
    await Promise.all(streams.map((s) => finished(s, { signal: timeout }).catch(() => undefined)));
    for (const s of streams) s.destroy();
  }
}
