/**
 * QEMUFileReader: the read side of a migration channel, the equivalent of QEMU's QEMUFile in
 * read mode. QEMU's loader is handler-driven — a section payload carries no length, the
 * entry's load_state pulls its own bytes — so this reader lets callers pull exactly what they
 * need, across chunk boundaries, and offers synchronous `try*` variants for hot loops when
 * the bytes are already buffered. All integers are big-endian (qemu-migration.md §1.1).
 *
 * Bytes come from a Readable (a net.Socket, a file stream) through its 'data' events, from
 * another AsyncIterable pulled by an internal pump, or are pushed with push()/end()/fail().
 * Chunks are kept in a list, never concatenated. Above `highWaterMark` buffered bytes the
 * stream is paused (the pump stops pulling), so a slow loader pushes back on the sender
 * through TCP. A Readable is read through its events rather than its async iterator: per
 * chunk (64 KiB from a socket) that saves a promise and the iterator's bookkeeping.
 *
 * One consumer at a time: a QEMUFile has a single reader, and overlapping async reads are a
 * programming error.
 */
import { ReadStream } from 'node:fs';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { StreamError } from './errors.ts';
import { badInput, sourceFailed, unexpectedEnd } from './errors.ts';

export interface ReaderOptions {
  /** Stop pulling from the source above this many buffered bytes (default 1 MiB). */
  highWaterMark?: number;
  /**
   * The chunks are the reader's alone, so bytes it has consumed may be overwritten in place
   * (`headWritable`). True by default for a socket or a file stream, whose chunks are fresh
   * buffers; false for pushed chunks and other sources, which may share theirs.
   */
  privateChunks?: boolean;
}

/**
 * Enough to keep a loader busy between reads; more only lengthens the queue a destination
 * still has to work through when the source stops the guest (the kernel's socket buffers
 * already hold a few MiB), which is downtime.
 */
export const DEFAULT_READER_HIGH_WATER_MARK = 1 << 20;
/** peekBytes() looks at most this far ahead. */
export const MAX_PEEK_BYTES = 64 << 10;

const EMPTY = Buffer.alloc(0);

interface Waiter {
  need: number;
  what: string;
  /** Also resolve when the source ends (atEnd()). */
  orEnd: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class QEMUFileReader {
  private chunks: Buffer[] = [];
  /** Index of the first live chunk in `chunks`. */
  private head = 0;
  /** Read position inside chunks[head]. */
  private pos = 0;
  private buffered = 0;
  private consumed = 0;
  private ended = false;
  private failed = false;
  private failure: unknown = undefined;
  private closed = false;
  private waiter: Waiter | null = null;
  /** Wakes the source once there is room again: the pump's wait, or resuming a Readable. */
  private roomWaiter: (() => void) | null = null;
  /** Detaches from a Readable source (close()). */
  private detach: (() => void) | null = null;
  private readonly highWaterMark: number;
  private readonly privateChunks: boolean;
  /** Scratch for values that straddle two chunks. */
  private readonly scratch = Buffer.alloc(8);
  /** Where take() left the contiguous bytes. */
  private tbuf: Buffer = EMPTY;

  constructor(source?: AsyncIterable<Uint8Array> | null, options: ReaderOptions = {}) {
    this.highWaterMark = options.highWaterMark ?? DEFAULT_READER_HIGH_WATER_MARK;
    this.privateChunks =
      options.privateChunks ?? (source instanceof Socket || source instanceof ReadStream);
    if (source instanceof Readable) this.attach(source);
    else if (source) void this.pump(source[Symbol.asyncIterator]());
  }

  /** Bytes consumed since the start of the stream. */
  get offset(): number {
    return this.consumed;
  }

  /** Bytes buffered and readable without waiting. */
  available(): number {
    return this.buffered;
  }

  // ---- feeding --------------------------------------------------------------------------

  /**
   * Appends a chunk (taken over, not copied: the caller must not modify it afterwards).
   * Returns false once more than the high-water mark is buffered.
   */
  push(chunk: Uint8Array): boolean {
    if (this.ended || this.failed) throw new Error('QEMUFileReader: push() after end() or fail()');
    if (this.closed) return false;
    if (chunk.length > 0) {
      this.chunks.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length),
      );
      this.buffered += chunk.length;
      this.wake();
    }
    return this.buffered < this.highWaterMark;
  }

  /** No more bytes will come. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** The source failed; pending and later reads reject with a StreamError. */
  fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.failure = err;
    this.wake();
  }

  /** Stops pulling from the source. The source itself (e.g. a socket) is left open. */
  close(): void {
    this.closed = true;
    this.detach?.();
    this.detach = null;
    this.wakePump();
    this.wake();
  }

  // ---- synchronous reads (hot paths) ----------------------------------------------------

  tryU8(): number | undefined {
    if (this.buffered < 1) return undefined;
    const v = this.chunks[this.head]![this.pos]!;
    this.advance(1);
    return v;
  }

  tryBe16(): number | undefined {
    if (this.buffered < 2) return undefined;
    const o = this.take(2);
    return this.tbuf.readUInt16BE(o);
  }

  tryBe32(): number | undefined {
    if (this.buffered < 4) return undefined;
    const o = this.take(4);
    return this.tbuf.readUInt32BE(o);
  }

  tryBe64(): bigint | undefined {
    if (this.buffered < 8) return undefined;
    const o = this.take(8);
    return this.tbuf.readBigUInt64BE(o);
  }

  /** A u64 as a number, without allocating a bigint; refuses values above 2^53 − 1. */
  tryBe64Number(what = 'u64'): number | undefined {
    if (this.buffered < 8) return undefined;
    const o = this.take(8);
    const hi = this.tbuf.readUInt32BE(o);
    const lo = this.tbuf.readUInt32BE(o + 4);
    if (hi > 0x1fffff) {
      const v = (BigInt(hi) << 32n) | BigInt(lo);
      throw badInput(this.consumed - 8, what, `value 0x${v.toString(16)} is above 2^53 - 1`);
    }
    return hi * 0x100000000 + lo;
  }

  /** Fills `dst` if that many bytes are buffered; returns false (consuming nothing) if not. */
  tryReadInto(dst: Uint8Array): boolean {
    if (this.buffered < dst.length) return false;
    this.copyOut(dst, 0, dst.length);
    return true;
  }

  trySkip(n: number): boolean {
    if (this.buffered < n) return false;
    this.discard(n);
    return true;
  }

  /** The byte `at` positions ahead, without consuming; undefined if not buffered yet. */
  tryPeekU8(at = 0): number | undefined {
    if (at >= this.buffered) return undefined;
    let i = this.head;
    let p = this.pos + at;
    while (p >= this.chunks[i]!.length) {
      p -= this.chunks[i]!.length;
      i++;
    }
    return this.chunks[i]![p];
  }

  // ---- in place (hot loops) ---------------------------------------------------------------

  /**
   * The head chunk: its bytes from `headOffset` to its end are buffered and readable without
   * a copy, for loops that parse many records in place (the RAM loader). Empty when nothing is
   * buffered. Consume with `consumeHead`.
   */
  get headBuffer(): Buffer {
    return this.buffered === 0 ? EMPTY : this.chunks[this.head]!;
  }

  get headOffset(): number {
    return this.buffered === 0 ? 0 : this.pos;
  }

  /** True when the consumed bytes of `headBuffer` (before `headOffset`) may be overwritten. */
  get headWritable(): boolean {
    return this.privateChunks;
  }

  /** Consumes `n` bytes of the head chunk (at most what is left of it). */
  consumeHead(n: number): void {
    const left = this.headBuffer.length - this.headOffset;
    if (!(Number.isSafeInteger(n) && n >= 0 && n <= left)) {
      throw new RangeError(`consumeHead: ${n} bytes, the head chunk has ${left}`);
    }
    if (n > 0) this.advance(n);
  }

  // ---- asynchronous reads ---------------------------------------------------------------

  async getU8(what = 'u8'): Promise<number> {
    if (this.buffered < 1) await this.waitFor(1, what);
    return this.tryU8()!;
  }

  async getBe16(what = 'be16'): Promise<number> {
    if (this.buffered < 2) await this.waitFor(2, what);
    return this.tryBe16()!;
  }

  async getBe32(what = 'be32'): Promise<number> {
    if (this.buffered < 4) await this.waitFor(4, what);
    return this.tryBe32()!;
  }

  async getBe64(what = 'be64'): Promise<bigint> {
    if (this.buffered < 8) await this.waitFor(8, what);
    return this.tryBe64()!;
  }

  async getBe64Number(what = 'be64'): Promise<number> {
    if (this.buffered < 8) await this.waitFor(8, what);
    return this.tryBe64Number(what)!;
  }

  /**
   * A fresh copy of the next `n` bytes. `n` is checked against `cap` before anything is
   * allocated, so a corrupt length cannot exhaust memory.
   */
  async getBytes(n: number, what: string, cap: number): Promise<Buffer> {
    this.checkLength(n, what, cap);
    const out = Buffer.allocUnsafe(n);
    await this.readInto(out, what);
    return out;
  }

  /** Fills `dst` completely, e.g. a guest page straight into guest memory: no extra copy. */
  readInto(dst: Uint8Array, what = 'bytes'): Promise<void> {
    return this.readIntoAt(dst, 0, dst.length, what);
  }

  /** Fills `dst[at .. at + n)`, waiting for bytes as needed. */
  async readIntoAt(dst: Uint8Array, at: number, n: number, what = 'bytes'): Promise<void> {
    this.checkRange(dst, at, n);
    let done = this.copyOut(dst, at, Math.min(n, this.buffered));
    while (done < n) {
      await this.waitFor(1, what);
      done += this.copyOut(dst, at + done, Math.min(n - done, this.buffered));
    }
  }

  async skip(n: number, what = 'bytes'): Promise<void> {
    let left = n - this.discard(Math.min(n, this.buffered));
    while (left > 0) {
      await this.waitFor(1, what);
      left -= this.discard(Math.min(left, this.buffered));
    }
  }

  async peekU8(what = 'u8'): Promise<number> {
    if (this.buffered < 1) await this.waitFor(1, what);
    return this.chunks[this.head]![this.pos]!;
  }

  /** A copy of the next `n` (≤ 64 KiB) bytes, without consuming them. */
  async peekBytes(n: number, what = 'bytes'): Promise<Buffer> {
    this.checkLength(n, what, MAX_PEEK_BYTES);
    if (this.buffered < n) await this.waitFor(n, what);
    const out = Buffer.allocUnsafe(n);
    let i = this.head;
    let p = this.pos;
    for (let done = 0; done < n; i++, p = 0) {
      const c = this.chunks[i]!;
      const len = Math.min(c.length - p, n - done);
      c.copy(out, done, p, p + len);
      done += len;
    }
    return out;
  }

  /** True once every byte was consumed and the source ended; false if more bytes exist. */
  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    if (!this.ended || this.failed) await this.waitFor(1, 'end of stream', true);
    return this.buffered === 0;
  }

  // ---- internals ------------------------------------------------------------------------

  private checkRange(dst: Uint8Array, at: number, n: number): void {
    if (!(Number.isSafeInteger(at) && Number.isSafeInteger(n) && at >= 0 && n >= 0)) {
      throw new RangeError(`QEMUFileReader: [${at}, +${n}) is not a range`);
    }
    if (at + n > dst.length) {
      throw new RangeError(`QEMUFileReader: [${at}, +${n}) overruns a ${dst.length}-byte buffer`);
    }
  }

  private checkLength(n: number, what: string, cap: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw badInput(this.consumed, what, `invalid length ${n}`);
    }
    if (n > cap) throw badInput(this.consumed, what, `length ${n} exceeds the limit of ${cap}`);
  }

  /** Consumes `n` bytes of the head chunk (n ≤ its remainder). */
  private advance(n: number): void {
    this.pos += n;
    this.buffered -= n;
    this.consumed += n;
    if (this.pos === this.chunks[this.head]!.length) this.dropHead();
    if (this.roomWaiter !== null && this.buffered < this.highWaterMark) this.wakePump();
  }

  private dropHead(): void {
    // Release the chunk now; compact the list only now and then.
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.pos = 0;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head >= 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Consumes `n` (≤ 8, buffered) bytes and returns where they are contiguous in `tbuf`. */
  private take(n: number): number {
    const c = this.chunks[this.head]!;
    const p = this.pos;
    if (c.length - p >= n) {
      this.tbuf = c;
      this.advance(n);
      return p;
    }
    this.copyOut(this.scratch, 0, n);
    this.tbuf = this.scratch;
    return 0;
  }

  /** Moves `n` (≤ buffered) bytes into dst[at..]; returns n. */
  private copyOut(dst: Uint8Array, at: number, n: number): number {
    let done = 0;
    while (done < n) {
      const c = this.chunks[this.head]!;
      const len = Math.min(c.length - this.pos, n - done);
      c.copy(dst, at + done, this.pos, this.pos + len); // no view object per copy
      done += len;
      this.advance(len);
    }
    return n;
  }

  /** Drops `n` (≤ buffered) bytes; returns n. */
  private discard(n: number): number {
    let done = 0;
    while (done < n) {
      const c = this.chunks[this.head]!;
      const len = Math.min(c.length - this.pos, n - done);
      done += len;
      this.advance(len);
    }
    return n;
  }

  private endError(what: string): StreamError | null {
    const at = this.consumed + this.buffered;
    if (this.failed) return sourceFailed(at, what, this.failure);
    if (this.ended || this.closed) return unexpectedEnd(at, what);
    return null;
  }

  private waitFor(need: number, what: string, orEnd = false): Promise<void> {
    const err = this.endError(what);
    if (err !== null) return orEnd && !this.failed ? Promise.resolve() : Promise.reject(err);
    if (this.waiter !== null) {
      return Promise.reject(new Error(`QEMUFileReader: overlapping reads (${what})`));
    }
    return new Promise<void>((resolve, reject) => {
      this.waiter = { need, what, orEnd, resolve, reject };
      this.wakePump();
    });
  }

  /** Settles the pending read if it can now complete or never will. */
  private wake(): void {
    const w = this.waiter;
    if (w === null) return;
    if (this.buffered >= w.need) {
      this.waiter = null;
      w.resolve();
      return;
    }
    const err = this.endError(w.what);
    if (err === null) return;
    this.waiter = null;
    if (w.orEnd && !this.failed) w.resolve();
    else w.reject(err);
  }

  private wakePump(): void {
    const r = this.roomWaiter;
    if (r !== null) {
      this.roomWaiter = null;
      r();
    }
  }

  /**
   * Takes a Readable's chunks as they come and pauses it above the high-water mark. The
   * stream is left open (and paused) by close(): a socket goes on carrying the return path.
   */
  private attach(stream: Readable): void {
    const onData = (chunk: Buffer | string): void => {
      if (typeof chunk === 'string') {
        this.fail(new Error('the channel delivers text, not bytes'));
        return;
      }
      // Above the mark, pause, unless a read still waits for more (as the pump keeps going).
      if (this.push(chunk) || this.waiter !== null) return;
      stream.pause();
      this.roomWaiter = () => stream.resume();
    };
    const onEnd = (): void => this.end();
    const onError = (err: Error): void => this.fail(err);
    const onClose = (): void => {
      if (!this.ended) this.fail(new Error('the channel closed before the stream ended'));
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.on('error', onError);
    stream.once('close', onClose);
    this.detach = () => {
      // The 'error' listener stays: an error after close() must not crash the process.
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.pause();
      this.roomWaiter = null;
    };
  }

  /** Pulls chunks from the source while below the high-water mark or a read needs more. */
  private async pump(it: AsyncIterator<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        if (this.closed) break;
        const need = this.waiter?.need ?? 0;
        if (this.buffered >= this.highWaterMark && this.buffered >= need) {
          await new Promise<void>((resolve) => (this.roomWaiter = resolve));
          continue;
        }
        const r = await it.next();
        if (this.closed) break;
        if (r.done === true) {
          this.end();
          return;
        }
        this.push(r.value);
      }
      await it.return?.();
    } catch (err) {
      if (!this.closed) this.fail(err);
    }
    if (this.closed) this.wake();
  }
}
