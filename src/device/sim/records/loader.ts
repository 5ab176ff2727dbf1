/**
 * The resuming side of the record engine (vfio-uapi.md §6.3): an incremental parser that takes
 * the stream in any chunking and writes image data straight into the device state. Refusals:
 * record over the device limit -> ENOMEM, unknown mandatory tag -> EOPNOTSUPP, bad sequence,
 * crc, framing or identity -> EINVAL. After any refused write the session is poisoned (later
 * writes ENODEV) and RESUMING -> STOP fails; so does a stream without its end record or one
 * that did not cover every chunk. Data lands in place before its crc is checked, which is safe
 * because a refused stream can never reach STOP (only a reset, back to power-on, leaves it).
 *
 * Load cost (`load-rate`): the first image data of a chunk makes the device allocate and set
 * up that chunk's resources, at `loadRate` bytes per second, inside the write(2) that carries
 * it — as mlx5 loads each received image with a firmware command in its write path. Data for
 * a chunk already set up (a dirty record) costs only the copy. So the time a destination needs
 * before it can take the final state is the part of the initial image it has not applied yet:
 * what switchover-ack lets the source wait for (qemu-migration.md §2.5).
 */
import { crc32 } from 'node:zlib';
import { fail, isVfioError } from '../../../uapi/index.ts';
import type { ResumingStream } from '../model.ts';
import type { ChunkedState } from './chunked-state.ts';
import {
  checkIdentity,
  RECORD_CRC_SIZE,
  RECORD_FLAG_OPTIONAL,
  RECORD_HEADER_SIZE,
  RECORD_KNOWN_FLAGS,
  RECORD_SEQ_SIZE,
  RECORD_SIZE_LIMIT,
  RecordTag,
  TAG_FIELDS_SIZE,
} from './format.ts';
import type { StreamIdentity } from './format.ts';

type Phase = 'header' | 'fields' | 'data' | 'crc';

const KNOWN_TAGS: readonly number[] = Object.values(RecordTag);

export class RecordLoader implements ResumingStream {
  readonly #state: ChunkedState;
  readonly #id: StreamIdentity;
  /** Header, seq and fields of the record being parsed (at most 16 + 4 + 24 bytes). */
  readonly #scratch = new Uint8Array(64);
  readonly #dv = new DataView(this.#scratch.buffer);
  /** Seq and fields of the current record, kept for when its crc has been checked. */
  readonly #fields = new Uint8Array(64);
  #phase: Phase = 'header';
  #need = RECORD_HEADER_SIZE;
  #have = 0;
  #tag = 0;
  #skip = false;
  #recordSize = 0;
  #crc = 0;
  #dataOff = 0;
  #dataLeft = 0;
  #expectSeq = 0;
  #bytesIn = 0;
  #ended = false;
  #poisoned: string | null = null;
  readonly #covered: Uint8Array;
  #coveredCount = 0;
  #imageBytes = 0;
  readonly #loadRate: number;
  /** Chunks whose resources are set up (first image data seen). */
  readonly #allocated: Uint8Array;
  #allocatedCount = 0;
  /** Bytes set up by the write in progress, charged when it returns. */
  #allocating = 0;
  /** The source's stop-copy size hint, when it sent one. */
  stopCopySizeHint: number | null = null;

  /** `loadRate`: bytes per second of first-time chunk setup; 0 makes it free. */
  constructor(state: ChunkedState, id: StreamIdentity, loadRate = 0) {
    this.#state = state;
    this.#id = id;
    this.#covered = new Uint8Array(state.chunkCount);
    this.#allocated = new Uint8Array(state.chunkCount);
    this.#loadRate = loadRate;
  }

  /** Bytes of state whose resources are set up so far. */
  get allocatedBytes(): number {
    return this.#allocatedCount * this.#state.chunkSize;
  }

  write(buf: Uint8Array): number {
    if (this.#poisoned) fail('ENODEV', `resume: stream already refused (${this.#poisoned})`);
    this.#allocating = 0;
    try {
      this.#consume(buf);
    } catch (err) {
      if (isVfioError(err)) this.#poisoned = err.message;
      throw err;
    }
    return this.#loadRate > 0 ? (this.#allocating * 1000) / this.#loadRate : 0;
  }

  finish(): void {
    if (this.#poisoned) fail('EINVAL', `resume: stream was refused: ${this.#poisoned}`);
    if (!this.#ended) {
      fail('EINVAL', `resume: stream truncated, no end record after ${this.#bytesIn} bytes`);
    }
    if (this.#coveredCount !== this.#state.chunkCount) {
      fail(
        'EINVAL',
        `resume: image covers ${this.#coveredCount} of ${this.#state.chunkCount} chunks`,
      );
    }
  }

  #consume(buf: Uint8Array): void {
    let i = 0;
    while (i < buf.length) {
      if (this.#ended)
        fail('EINVAL', `resume: data after the end record at byte ${this.#bytesIn + i}`);
      if (this.#phase === 'data') {
        const n = Math.min(this.#dataLeft, buf.length - i);
        const src = buf.subarray(i, i + n);
        this.#crc = crc32(src, this.#crc);
        if (!this.#skip) this.#state.bytes.set(src, this.#dataOff);
        this.#dataOff += n;
        this.#dataLeft -= n;
        i += n;
        if (this.#dataLeft === 0) this.#expect('crc', RECORD_CRC_SIZE);
        continue;
      }
      const n = Math.min(this.#need - this.#have, buf.length - i);
      this.#scratch.set(buf.subarray(i, i + n), this.#have);
      this.#have += n;
      i += n;
      if (this.#have === this.#need) this.#step(this.#bytesIn + i);
    }
    this.#bytesIn += buf.length;
  }

  #expect(phase: Phase, need: number): void {
    this.#phase = phase;
    this.#need = need;
    this.#have = 0;
  }

  /** A fixed-size piece is complete; `at` is the stream offset just after it (for errors). */
  #step(at: number): void {
    const dv = this.#dv;
    switch (this.#phase) {
      case 'header': {
        const size = dv.getBigUint64(0, true);
        const flags = dv.getUint32(8, true);
        const tag = dv.getUint32(12, true);
        const where = `record ${this.#expectSeq} ending header at byte ${at}`;
        if (size > BigInt(RECORD_SIZE_LIMIT)) {
          fail(
            'ENOMEM',
            `resume: ${where}: record_size ${size} exceeds the device limit ${RECORD_SIZE_LIMIT}`,
          );
        }
        if ((flags & ~RECORD_KNOWN_FLAGS) !== 0)
          fail('EINVAL', `resume: ${where}: unknown flags 0x${flags.toString(16)}`);
        const known = KNOWN_TAGS.includes(tag);
        if (!known && !(flags & RECORD_FLAG_OPTIONAL)) {
          fail('EOPNOTSUPP', `resume: ${where}: unknown mandatory tag ${tag}`);
        }
        this.#tag = tag;
        this.#skip = !known;
        this.#recordSize = Number(size);
        const fields = known ? TAG_FIELDS_SIZE[tag as RecordTag] : 0;
        const min = RECORD_SEQ_SIZE + fields + RECORD_CRC_SIZE;
        if (
          this.#recordSize < min ||
          (known && tag !== RecordTag.IMAGE && this.#recordSize !== min)
        ) {
          fail('EINVAL', `resume: ${where}: record_size ${size} is wrong for tag ${tag}`);
        }
        this.#crc = crc32(this.#scratch.subarray(0, RECORD_HEADER_SIZE));
        this.#expect('fields', RECORD_SEQ_SIZE + fields);
        return;
      }
      case 'fields': {
        const fields = this.#scratch.subarray(0, this.#need);
        this.#crc = crc32(fields, this.#crc);
        const seq = dv.getUint32(0, true);
        if (seq !== this.#expectSeq) {
          fail(
            'EINVAL',
            `resume: record at byte ${at} has sequence ${seq}, expected ${this.#expectSeq}`,
          );
        }
        if (seq === 0 && this.#tag !== RecordTag.HEADER) {
          fail(
            'EINVAL',
            `resume: the stream does not start with a header record (tag ${this.#tag})`,
          );
        }
        const dataLen = this.#recordSize - this.#need - RECORD_CRC_SIZE;
        if (this.#tag === RecordTag.IMAGE) this.#checkImage(dv.getBigUint64(4, true), dataLen, seq);
        this.#dataLeft = dataLen;
        if (dataLen > 0) this.#phase = 'data';
        else this.#expect('crc', RECORD_CRC_SIZE);
        // Fields are re-read at the crc step; keep them out of the crc scratch area.
        this.#fields.set(fields);
        return;
      }
      case 'crc': {
        const got = dv.getUint32(0, true);
        const want = this.#crc >>> 0;
        if (got !== want) {
          fail(
            'EINVAL',
            `resume: record ${this.#expectSeq} (tag ${this.#tag}) ending at byte ${at} fails its crc32`,
          );
        }
        this.#complete();
        this.#expectSeq++;
        this.#expect('header', RECORD_HEADER_SIZE);
        return;
      }
      case 'data':
        return;
    }
  }

  #checkImage(offset: bigint, len: number, seq: number): void {
    const { chunkSize, size } = this.#state;
    if (
      len <= 0 ||
      len % chunkSize !== 0 ||
      offset % BigInt(chunkSize) !== 0n ||
      offset + BigInt(len) > BigInt(size)
    ) {
      fail(
        'EINVAL',
        `resume: image record ${seq} [${offset}, +${len}) is not a range of whole chunks inside the ${size}-byte state`,
      );
    }
    this.#dataOff = Number(offset);
    const first = Number(offset) / chunkSize;
    for (let c = first; c < first + len / chunkSize; c++) {
      if (this.#allocated[c] !== 0) continue;
      this.#allocated[c] = 1;
      this.#allocatedCount++;
      this.#allocating += chunkSize;
    }
  }

  /** A record passed its crc: apply what it says. */
  #complete(): void {
    const dv = new DataView(this.#fields.buffer);
    switch (this.#tag) {
      case RecordTag.HEADER: {
        const why = checkIdentity(dv, RECORD_SEQ_SIZE, this.#id);
        if (why) fail('EINVAL', `resume: header record: ${why}`);
        return;
      }
      case RecordTag.IMAGE: {
        const len = this.#recordSize - RECORD_SEQ_SIZE - 8 - RECORD_CRC_SIZE;
        const first = Number(dv.getBigUint64(RECORD_SEQ_SIZE, true)) / this.#state.chunkSize;
        for (let c = first; c < first + len / this.#state.chunkSize; c++) {
          if (this.#covered[c] === 0) {
            this.#covered[c] = 1;
            this.#coveredCount++;
          }
        }
        this.#imageBytes += len;
        return;
      }
      case RecordTag.STOP_COPY_SIZE:
        this.stopCopySizeHint = Number(dv.getBigUint64(RECORD_SEQ_SIZE, true));
        return;
      case RecordTag.END: {
        const sent = dv.getBigUint64(RECORD_SEQ_SIZE, true);
        if (sent !== BigInt(this.#imageBytes)) {
          fail(
            'EINVAL',
            `resume: end record counts ${sent} image bytes, ${this.#imageBytes} arrived`,
          );
        }
        this.#ended = true;
        return;
      }
      default:
        return; // an optional record this device does not know: skipped
    }
  }
}
