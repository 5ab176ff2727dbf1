/**
 * The saving side of the record engine (vfio-uapi.md §6.1, §6.2, §9.2). Records are produced
 * one at a time as the reader asks for bytes, and image data is copied straight from the live
 * state into the caller's buffer: the session never holds a copy of the state.
 *
 * Order: header, (PRE_COPY only) the stop-copy size hint, the initial image (chunk groups in
 * address order), then one record per dirty chunk; in STOP_COPY, after everything else, the end
 * record. A chunk counts as sent once its record *starts*: a change after that (even while
 * the record is half read) marks it dirty again, a change before it is simply read fresh.
 */
import { crc32 } from 'node:zlib';
import type { SavingStream } from '../model.ts';
import type { ChunkedState } from './chunked-state.ts';
import {
  encodeRecordPrefix,
  IMAGE_RECORD_TARGET,
  RECORD_CRC_SIZE,
  RECORD_FLAG_OPTIONAL,
  recordBytes,
  RecordTag,
  writeIdentity,
} from './format.ts';
import type { StreamIdentity } from './format.ts';

/** Which PRECOPY_INFO counter a record's bytes belong to. */
type Part = 'initial' | 'dirty' | 'end';

/** Chunks per initial image record. */
export function initialGroup(chunkSize: number): number {
  return Math.max(1, Math.floor(IMAGE_RECORD_TARGET / chunkSize));
}

/** Bytes of the initial image records for chunks [from, count), `from` a multiple of the group. */
export function initialImageBytes(
  state: { chunkSize: number; chunkCount: number },
  from: number,
): number {
  const left = state.chunkCount - from;
  if (left <= 0) return 0;
  const records = Math.ceil(left / initialGroup(state.chunkSize));
  return left * state.chunkSize + records * recordBytes(RecordTag.IMAGE);
}

/** The whole state as a STOP_COPY from STOP streams it: header, image, end. */
export function fullStreamBytes(state: { chunkSize: number; chunkCount: number }): number {
  return recordBytes(RecordTag.HEADER) + initialImageBytes(state, 0) + recordBytes(RecordTag.END);
}

export class RecordSaver implements SavingStream {
  readonly #state: ChunkedState;
  readonly #id: StreamIdentity;
  readonly #group: number;
  readonly #precopy: boolean;
  #stopCopy: boolean;
  #seq = 0;
  #headerSent = false;
  #hintSent: boolean;
  #endSent = false;
  /** Next chunk of the initial pass; chunks below it have been (or are being) sent. */
  #initialNext = 0;
  readonly #dirty: Uint8Array;
  #dirtyCount = 0;
  #dirtyScan = 0;
  #imageBytesSent = 0;

  // The record being read: prefix bytes, then image data from the live state, then the crc.
  readonly #prefix = new Uint8Array(64);
  readonly #trailer = new Uint8Array(RECORD_CRC_SIZE);
  #cur: {
    part: Part;
    prefixLen: number;
    prefixPos: number;
    dataOff: number;
    dataLen: number;
    dataPos: number;
    trailerPos: number;
    crc: number;
  } | null = null;

  constructor(state: ChunkedState, id: StreamIdentity, precopy: boolean) {
    this.#state = state;
    this.#id = id;
    this.#group = initialGroup(state.chunkSize);
    this.#precopy = precopy;
    this.#stopCopy = !precopy;
    this.#hintSent = !precopy;
    this.#dirty = new Uint8Array(state.chunkCount);
  }

  /** The device changed `chunk`: it must be sent (again) if its record already started. */
  noteChange(chunk: number): void {
    if (chunk < this.#initialNext && this.#dirty[chunk] === 0) {
      this.#dirty[chunk] = 1;
      this.#dirtyCount++;
    }
  }

  read(buf: Uint8Array): number {
    let n = 0;
    while (n < buf.length) {
      if (!this.#cur && !this.#startNext()) break;
      n += this.#emit(buf, n);
    }
    return n;
  }

  precopyInfo(): { initialBytes: number; dirtyBytes: number } {
    const cur = this.#cur ? this.#curRemaining() : 0;
    let initialBytes = initialImageBytes(this.#state, this.#initialNext);
    if (!this.#headerSent) initialBytes += recordBytes(RecordTag.HEADER);
    if (!this.#hintSent) initialBytes += recordBytes(RecordTag.STOP_COPY_SIZE);
    let dirtyBytes = this.#dirtyCount * recordBytes(RecordTag.IMAGE, this.#state.chunkSize);
    if (this.#cur?.part === 'initial') initialBytes += cur;
    else dirtyBytes += cur;
    return { initialBytes, dirtyBytes };
  }

  enterStopCopy(): void {
    this.#stopCopy = true;
  }

  remainingBytes(): number {
    const { initialBytes, dirtyBytes } = this.precopyInfo();
    return initialBytes + dirtyBytes + (this.#endSent ? 0 : recordBytes(RecordTag.END));
  }

  get precopy(): boolean {
    return this.#precopy;
  }

  /** Picks the next record; false when there is nothing to send right now. */
  #startNext(): boolean {
    const st = this.#state;
    if (!this.#headerSent) {
      this.#headerSent = true;
      return this.#begin('initial', RecordTag.HEADER, 0, 0, 0, (dv, at) =>
        writeIdentity(dv, at, this.#id),
      );
    }
    if (!this.#hintSent) {
      this.#hintSent = true;
      const hint = fullStreamBytes(st);
      return this.#begin(
        'initial',
        RecordTag.STOP_COPY_SIZE,
        RECORD_FLAG_OPTIONAL,
        0,
        0,
        (dv, at) => dv.setBigUint64(at, BigInt(hint), true),
      );
    }
    if (this.#initialNext < st.chunkCount) {
      const first = this.#initialNext;
      const count = Math.min(this.#group, st.chunkCount - first);
      this.#initialNext += count;
      return this.#beginImage('initial', first, count);
    }
    if (this.#dirtyCount > 0) {
      let c = this.#dirtyScan;
      while (this.#dirty[c] === 0) c = c + 1 === st.chunkCount ? 0 : c + 1;
      this.#dirty[c] = 0;
      this.#dirtyCount--;
      this.#dirtyScan = c + 1 === st.chunkCount ? 0 : c + 1;
      return this.#beginImage('dirty', c, 1);
    }
    if (this.#stopCopy && !this.#endSent) {
      this.#endSent = true;
      const total = this.#imageBytesSent;
      return this.#begin('end', RecordTag.END, 0, 0, 0, (dv, at) =>
        dv.setBigUint64(at, BigInt(total), true),
      );
    }
    return false;
  }

  #beginImage(part: Part, firstChunk: number, chunks: number): boolean {
    const off = firstChunk * this.#state.chunkSize;
    const len = chunks * this.#state.chunkSize;
    this.#imageBytesSent += len;
    return this.#begin(part, RecordTag.IMAGE, 0, off, len, (dv, at) =>
      dv.setBigUint64(at, BigInt(off), true),
    );
  }

  #begin(
    part: Part,
    tag: RecordTag,
    flags: number,
    dataOff: number,
    dataLen: number,
    fields: (dv: DataView, at: number) => void,
  ): true {
    const prefixLen = encodeRecordPrefix(this.#prefix, tag, flags, this.#seq++, dataLen, fields);
    this.#cur = {
      part,
      prefixLen,
      prefixPos: 0,
      dataOff,
      dataLen,
      dataPos: 0,
      trailerPos: 0,
      crc: crc32(this.#prefix.subarray(0, prefixLen)),
    };
    return true;
  }

  #curRemaining(): number {
    const c = this.#cur!;
    return c.prefixLen - c.prefixPos + c.dataLen - c.dataPos + RECORD_CRC_SIZE - c.trailerPos;
  }

  /** Copies from the current record into buf at `at`; returns the bytes copied. */
  #emit(buf: Uint8Array, at: number): number {
    const c = this.#cur!;
    const room = buf.length - at;
    if (c.prefixPos < c.prefixLen) {
      const n = Math.min(room, c.prefixLen - c.prefixPos);
      buf.set(this.#prefix.subarray(c.prefixPos, c.prefixPos + n), at);
      c.prefixPos += n;
      return n;
    }
    if (c.dataPos < c.dataLen) {
      const n = Math.min(room, c.dataLen - c.dataPos);
      const src = this.#state.bytes.subarray(c.dataOff + c.dataPos, c.dataOff + c.dataPos + n);
      buf.set(src, at);
      // The crc covers exactly the bytes handed out, even if the chunk changes meanwhile.
      c.crc = crc32(src, c.crc);
      c.dataPos += n;
      return n;
    }
    if (c.trailerPos === 0) new DataView(this.#trailer.buffer).setUint32(0, c.crc, true);
    const n = Math.min(room, RECORD_CRC_SIZE - c.trailerPos);
    buf.set(this.#trailer.subarray(c.trailerPos, c.trailerPos + n), at);
    c.trailerPos += n;
    if (c.trailerPos === RECORD_CRC_SIZE) this.#cur = null;
    return n;
  }
}
