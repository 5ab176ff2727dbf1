/**
 * QEMUFileWriter: the write side of a migration channel (QEMU's QEMUFile in write mode).
 *
 * Puts are synchronous, like qemu_put_*: they stage bytes into a large buffer taken from a
 * small recycled pool. A full buffer is handed to the sink by reference — socket.write()
 * does not copy — so a buffer goes back to the pool only once the sink says it is done with
 * it. Hot loops call `await ready()` when `needsDrain` is set, which is the back-pressure
 * point: at most `poolSize` buffers are in flight. No allocation per put or per page.
 */

/** Where the writer's chunks go: a socket, a file, memory. */
export interface ByteSink {
  /**
   * Takes `chunk` by reference. Resolves once the sink no longer needs its bytes (handed to
   * the OS, or copied); only then is the buffer reused. Rejects if the sink failed.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Flushes what the sink holds and closes it (for a socket: half-close, reads go on). */
  close(): Promise<void>;
}

export interface WriterOptions {
  /** Bytes staged before a chunk is handed to the sink (default 256 KiB). */
  chunkSize?: number;
  /** Chunks in flight before `needsDrain` is raised (default 4). */
  poolSize?: number;
}

export const DEFAULT_WRITER_CHUNK_SIZE = 256 << 10;
export const DEFAULT_WRITER_POOL_SIZE = 4;

const TWO_POW_32 = 0x100000000;

export class QEMUFileWriter {
  private readonly sink: ByteSink;
  private readonly chunkSize: number;
  private readonly poolSize: number;
  private buf: Buffer;
  private pos = 0;
  private readonly free: Buffer[] = [];
  private readonly pending = new Set<Promise<void>>();
  private written = 0;
  private failure: Error | undefined;
  private closed = false;

  constructor(sink: ByteSink, options: WriterOptions = {}) {
    this.sink = sink;
    this.chunkSize = options.chunkSize ?? DEFAULT_WRITER_CHUNK_SIZE;
    this.poolSize = options.poolSize ?? DEFAULT_WRITER_POOL_SIZE;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize < 16) {
      throw new RangeError(`QEMUFileWriter: chunkSize ${this.chunkSize} must be an integer >= 16`);
    }
    if (!Number.isSafeInteger(this.poolSize) || this.poolSize < 1) {
      throw new RangeError(`QEMUFileWriter: poolSize ${this.poolSize} must be an integer >= 1`);
    }
    this.buf = Buffer.allocUnsafe(this.chunkSize);
  }

  /** Exact bytes put so far: handed to the sink plus staged (rate limiting, statistics). */
  get bytesWritten(): number {
    return this.written;
  }

  /** True when the caller should `await ready()` before putting more. */
  get needsDrain(): boolean {
    return this.pending.size >= this.poolSize || this.failure !== undefined;
  }

  putU8(v: number): void {
    if (this.pos + 1 > this.buf.length) this.rotate();
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    this.written += 1;
  }

  putBe16(v: number): void {
    if (this.pos + 2 > this.buf.length) this.rotate();
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    this.written += 2;
  }

  putBe32(v: number): void {
    if (this.pos + 4 > this.buf.length) this.rotate();
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    this.written += 4;
  }

  /** A u64 from a bigint, or from a non-negative safe-integer number (no bigint allocated). */
  putBe64(v: bigint | number): void {
    if (this.pos + 8 > this.buf.length) this.rotate();
    if (typeof v === 'bigint') {
      this.buf.writeBigUInt64BE(v, this.pos);
    } else {
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new RangeError(`putBe64: ${v} is not a u64 representable as a number`);
      }
      this.buf.writeUInt32BE(Math.floor(v / TWO_POW_32), this.pos);
      this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    }
    this.pos += 8;
    this.written += 8;
  }

  /** Copies `data` (the caller may reuse it as soon as this returns, as with qemu_put_buffer). */
  putBuffer(data: Uint8Array): void {
    let at = 0;
    while (at < data.length) {
      if (this.pos === this.buf.length) this.rotate();
      const n = Math.min(data.length - at, this.buf.length - this.pos);
      this.buf.set(n === data.length ? data : data.subarray(at, at + n), this.pos);
      this.pos += n;
      at += n;
    }
    this.written += data.length;
  }

  /** Bytes the largest `reserve` may ask for: one staging buffer. */
  get chunkBytes(): number {
    return this.chunkSize;
  }

  /** Room left in the staging buffer before the next put starts a new one. */
  get room(): number {
    return this.buf.length - this.pos;
  }

  /**
   * Reserves `n` (≤ `chunkBytes`) contiguous bytes of the staging buffer — a new one is started
   * when the current one has less room — and returns their offset in `stagingBuffer`. The
   * caller lays out many records there at once and then calls `commit(n)`; nothing else may
   * be put in between. This is how RAM pages go out in runs (ram/format.ts).
   */
  reserve(n: number): number {
    if (!(Number.isSafeInteger(n) && n >= 0 && n <= this.chunkSize)) {
      throw new RangeError(`reserve: ${n} bytes is not in [0, ${this.chunkSize}]`);
    }
    if (this.pos + n > this.buf.length) this.rotate();
    return this.pos;
  }

  /** The staging buffer `reserve` returned an offset into. */
  get stagingBuffer(): Buffer {
    return this.buf;
  }

  /** The `n` reserved bytes were written. */
  commit(n: number): void {
    if (!(Number.isSafeInteger(n) && n >= 0 && this.pos + n <= this.buf.length)) {
      throw new RangeError(`commit: ${n} bytes overrun the reserved room (${this.room})`);
    }
    this.pos += n;
    this.written += n;
  }

  /** Waits until fewer than `poolSize` chunks are in flight; rethrows a sink failure. */
  async ready(): Promise<void> {
    while (this.pending.size >= this.poolSize && this.failure === undefined) {
      await Promise.race(this.pending);
    }
    this.throwIfFailed();
  }

  /**
   * Hands the staged bytes to the sink now, without waiting for it (a pass of the migration
   * loop ends: its bytes should travel while the next one is prepared). Back-pressure stays
   * with `needsDrain` / `ready()`.
   */
  send(): void {
    this.throwIfFailed();
    this.submit();
  }

  /** Hands the staged bytes to the sink and waits until the sink has taken everything. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    this.submit();
    while (this.pending.size > 0) await Promise.race(this.pending);
    this.throwIfFailed();
  }

  /** flush(), then closes the sink. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await this.sink.close();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** The staging buffer is full: submit it and continue in a fresh one. */
  private rotate(): void {
    this.throwIfFailed();
    this.submit();
  }

  private submit(): void {
    if (this.pos === 0) return;
    if (this.closed) throw new Error('QEMUFileWriter: put after close()');
    const buf = this.buf;
    const chunk = buf.subarray(0, this.pos);
    const done: Promise<void> = this.sink.write(chunk).then(
      () => {
        this.pending.delete(done);
        this.free.push(buf);
      },
      (err: unknown) => {
        this.pending.delete(done);
        this.failure ??= writeFailure(err, this.written);
      },
    );
    this.pending.add(done);
    this.buf = this.free.pop() ?? Buffer.allocUnsafe(this.chunkSize);
    this.pos = 0;
  }
}

function writeFailure(err: unknown, written: number): Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new Error(`write to the migration channel failed (${written} bytes put): ${reason}`, {
    cause: err,
  });
}
