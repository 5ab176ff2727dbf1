/**
 * The bytes of a multifd channel (qemu-migration.md §4.3; QEMU's migration/multifd.h,
 * multifd.c, multifd-nocomp.c). A channel opens with the 64-byte `MultiFDInit_t` handshake;
 * then come packets, each starting with `MultiFDPacketHdr_t` (magic, version, flags):
 *
 *   RAM           `MultiFDPacket_t`: pages_alloc, normal_pages, next_packet_size, u64
 *                 packet_num, zero_pages, reserved words, ramblock[256], one u64 offset per
 *                 page a packet may hold (the normal pages' first, then the zero pages'), and
 *                 after it the normal pages themselves (next_packet_size bytes). A SYNC packet
 *                 is one with the SYNC flag and no pages.
 *   device state  `MultiFDPacketDeviceState_t`: idstr[256], instance_id, next_packet_size,
 *                 then that many bytes of the device's opaque state.
 *
 * Every integer is big-endian. Decoding checks what QEMU's receiver checks, with its messages,
 * and what it takes on trust — page-aligned offsets, a RAM packet's data size, a bound on a
 * device-state packet — so a damaged channel is refused before anything lands in guest memory
 * or gets allocated.
 */
import {
  MULTIFD_DEVICE_STATE_PACKET_SIZE,
  MULTIFD_FLAG_COMPRESSION_MASK,
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_FLAG_NOCOMP,
  MULTIFD_FLAG_SYNC,
  MULTIFD_IDSTR_SIZE,
  MULTIFD_INIT_SIZE,
  MULTIFD_MAGIC,
  MULTIFD_PACKET_HDR_SIZE,
  MULTIFD_RAM_PACKET_FIXED_SIZE,
  MULTIFD_VERSION,
  multifdRamPacketLen,
  multifdRamPageCount,
} from '../stream/multifd-constants.ts';

/** `QemuUUID`: 16 bytes. */
export const MULTIFD_UUID_SIZE = 16;
/**
 * Largest device-state payload a receiver allocates. VFIO sends at most its 1 MiB data buffer
 * (or its config) plus a 12-byte header per packet; QEMU itself sets no bound.
 */
export const MULTIFD_DEVICE_STATE_MAX = 16 << 20;
/** The most channels `multifd-channels` allows (a u8 channel id). */
export const MULTIFD_CHANNELS_MAX = 255;

const TWO_POW_32 = 0x100000000;

/** A channel's bytes broke the protocol; the message is QEMU's where QEMU has one. */
export class MultifdError extends Error {
  override readonly name = 'MultifdError';
}

const hex = (n: number): string => n.toString(16);

/** "00000000-0000-0000-0000-000000000000", as `qemu_uuid_unparse` writes it. */
export function formatUuid(uuid: Uint8Array): string {
  const h = Buffer.from(uuid.buffer, uuid.byteOffset, uuid.length).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A u64 at `at` as an exact number; refuses values above 2^53 - 1. */
function u64At(buf: Buffer, at: number, what: string): number {
  const hi = buf.readUInt32BE(at);
  if (hi > 0x1fffff) throw new MultifdError(`multifd: ${what} 0x${hex(hi)}xxxxxxxx is too large`);
  return hi * TWO_POW_32 + buf.readUInt32BE(at + 4);
}

function putU64(buf: Buffer, at: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO_POW_32), at);
  buf.writeUInt32BE(v >>> 0, at + 4);
}

// --- the handshake ------------------------------------------------------------------------

/** `multifd_send_initial_packet`: magic, version, the source's UUID, the channel id. */
export function encodeMultifdInit(uuid: Uint8Array, id: number): Buffer {
  if (uuid.length !== MULTIFD_UUID_SIZE) {
    throw new RangeError(`a multifd UUID has ${MULTIFD_UUID_SIZE} bytes, not ${uuid.length}`);
  }
  if (!(Number.isInteger(id) && id >= 0 && id < MULTIFD_CHANNELS_MAX)) {
    throw new RangeError(`multifd channel id ${id} is not in 0..${MULTIFD_CHANNELS_MAX - 1}`);
  }
  const b = Buffer.alloc(MULTIFD_INIT_SIZE);
  b.writeUInt32BE(MULTIFD_MAGIC, 0);
  b.writeUInt32BE(MULTIFD_VERSION, 4);
  b.set(uuid, 8);
  b[8 + MULTIFD_UUID_SIZE] = id;
  return b;
}

/**
 * `multifd_recv_initial_packet`: the channel id of a handshake, checked against this side's
 * UUID and channel count. The reserved bytes are ignored, as QEMU ignores them.
 */
export function parseMultifdInit(buf: Buffer, uuid: Uint8Array, channels: number): number {
  if (buf.length !== MULTIFD_INIT_SIZE) {
    throw new RangeError(`a multifd handshake has ${MULTIFD_INIT_SIZE} bytes, not ${buf.length}`);
  }
  const magic = buf.readUInt32BE(0);
  if (magic !== MULTIFD_MAGIC) {
    throw new MultifdError(
      `multifd: received packet magic ${hex(magic)} expected ${hex(MULTIFD_MAGIC)}`,
    );
  }
  const version = buf.readUInt32BE(4);
  if (version !== MULTIFD_VERSION) {
    throw new MultifdError(
      `multifd: received packet version ${version} expected ${MULTIFD_VERSION}`,
    );
  }
  const id = buf[8 + MULTIFD_UUID_SIZE]!;
  const theirs = buf.subarray(8, 8 + MULTIFD_UUID_SIZE);
  if (!theirs.equals(uuid)) {
    throw new MultifdError(
      `multifd: received uuid '${formatUuid(theirs)}' and expected uuid ` +
        `'${formatUuid(uuid)}' for channel ${id}`,
    );
  }
  // QEMU compares with '>' and would index past its channels for id == channels.
  if (id >= channels) {
    throw new MultifdError(
      `multifd: received channel id ${id} is greater than the last channel ${channels - 1}`,
    );
  }
  return id;
}

// --- packet headers -----------------------------------------------------------------------

/** `multifd_recv_unfill_packet_header`: the flags of a packet whose first 12 bytes are `buf`. */
export function parsePacketHeader(buf: Buffer): number {
  const magic = buf.readUInt32BE(0);
  if (magic !== MULTIFD_MAGIC) {
    throw new MultifdError(
      `multifd: received packet magic ${hex(magic)}, expected ${hex(MULTIFD_MAGIC)}`,
    );
  }
  const version = buf.readUInt32BE(4);
  if (version !== MULTIFD_VERSION) {
    throw new MultifdError(
      `multifd: received packet version ${version}, expected ${MULTIFD_VERSION}`,
    );
  }
  return buf.readUInt32BE(8);
}

function putPacketHeader(buf: Buffer, flags: number): void {
  buf.writeUInt32BE(MULTIFD_MAGIC, 0);
  buf.writeUInt32BE(MULTIFD_VERSION, 4);
  buf.writeUInt32BE(flags, 8);
}

// --- RAM packets --------------------------------------------------------------------------

/** Where the fields of `MultiFDPacket_t` sit. */
const RAM = {
  pagesAlloc: 12,
  normalPages: 16,
  nextPacketSize: 20,
  packetNum: 24,
  zeroPages: 32,
  ramblock: 64,
  offsets: MULTIFD_RAM_PACKET_FIXED_SIZE,
} as const;

/**
 * One RAM packet, as a sender fills it and a receiver reads it: the `packetLen` bytes of
 * `MultiFDPacket_t` in `bytes`, and the page offsets decoded (or to encode) in two arrays.
 * Both sides reuse their packets, so nothing is allocated per packet or page.
 */
export class MultifdRamPacket {
  readonly pageSize: number;
  /** `multifd_ram_page_count()`: what `pages_alloc` says on the sending side. */
  readonly pageCount: number;
  readonly packetLen: number;
  /** The packet on the wire. */
  readonly bytes: Buffer;
  /** Byte offsets inside `block` of the normal pages, then (separately) the zero pages. */
  readonly normal: Float64Array;
  readonly zero: Float64Array;
  normalCount = 0;
  zeroCount = 0;
  /** The RAMBlock every page is in ('' for a packet without pages). */
  block = '';
  flags = MULTIFD_FLAG_NOCOMP;
  packetNum = 0;
  /** Bytes of normal pages that follow the packet. */
  nextPacketSize = 0;
  #nameBytes: Buffer = Buffer.alloc(0);
  #name = '';

  constructor(pageSize: number) {
    if (!(Number.isInteger(pageSize) && pageSize >= 1024 && (pageSize & (pageSize - 1)) === 0)) {
      throw new RangeError(`multifd: page size ${pageSize} is not a power of two >= 1024`);
    }
    this.pageSize = pageSize;
    this.pageCount = multifdRamPageCount(pageSize);
    this.packetLen = multifdRamPacketLen(pageSize);
    this.bytes = Buffer.alloc(this.packetLen);
    this.normal = new Float64Array(this.pageCount);
    this.zero = new Float64Array(this.pageCount);
  }

  get pages(): number {
    return this.normalCount + this.zeroCount;
  }

  get full(): boolean {
    return this.pages === this.pageCount;
  }

  /** Empties the packet for the next pages (`multifd_pages_reset`). */
  reset(): void {
    this.normalCount = 0;
    this.zeroCount = 0;
    this.block = '';
    this.flags = MULTIFD_FLAG_NOCOMP;
  }

  /**
   * `multifd_send_fill_packet` + `multifd_ram_fill_packet`: the header of the pages queued,
   * or of a SYNC packet (no pages, `pages_alloc` 0) when `flags` has SYNC.
   */
  encode(packetNum: number): Buffer {
    const b = this.bytes;
    const sync = (this.flags & MULTIFD_FLAG_SYNC) !== 0;
    if (sync && this.pages > 0) throw new Error('multifd: a SYNC packet carries no pages');
    b.fill(0);
    putPacketHeader(b, this.flags);
    this.packetNum = packetNum;
    this.nextPacketSize = this.normalCount * this.pageSize;
    b.writeUInt32BE(this.nextPacketSize, RAM.nextPacketSize);
    putU64(b, RAM.packetNum, packetNum);
    if (sync) return b;
    b.writeUInt32BE(this.pageCount, RAM.pagesAlloc);
    b.writeUInt32BE(this.normalCount, RAM.normalPages);
    b.writeUInt32BE(this.zeroCount, RAM.zeroPages);
    if (this.pages > 0) this.#nameOf(this.block).copy(b, RAM.ramblock);
    let at: number = RAM.offsets;
    for (let i = 0; i < this.normalCount; i++, at += 8) putU64(b, at, this.normal[i]!);
    for (let i = 0; i < this.zeroCount; i++, at += 8) putU64(b, at, this.zero[i]!);
    return b;
  }

  /**
   * `multifd_recv_unfill_packet_ram` + `multifd_ram_unfill_packet`, on the `packetLen` bytes
   * in `bytes` whose header was checked: the counts, the block and the offsets, each checked
   * against this side's page count; the offsets are checked against the block by `checkIn`.
   */
  decode(): void {
    const b = this.bytes;
    this.flags = b.readUInt32BE(8);
    const compression = this.flags & MULTIFD_FLAG_COMPRESSION_MASK;
    if (compression !== MULTIFD_FLAG_NOCOMP) {
      throw new MultifdError(
        `multifd: flags received ${hex(compression)} flags expected ${hex(MULTIFD_FLAG_NOCOMP)}`,
      );
    }
    this.nextPacketSize = b.readUInt32BE(RAM.nextPacketSize);
    this.packetNum = u64At(b, RAM.packetNum, 'packet number');
    const alloc = b.readUInt32BE(RAM.pagesAlloc);
    if (alloc > this.pageCount) {
      throw new MultifdError(
        `multifd: received packet with ${alloc} pages, expected ${this.pageCount}`,
      );
    }
    const normal = b.readUInt32BE(RAM.normalPages);
    if (normal > alloc) {
      throw new MultifdError(
        `multifd: received packet with ${normal} non-zero pages, which exceeds maximum ` +
          `expected pages ${alloc}`,
      );
    }
    const zero = b.readUInt32BE(RAM.zeroPages);
    if (zero > alloc - normal) {
      throw new MultifdError(
        `multifd: received packet with ${zero} zero pages, expected maximum ${alloc - normal}`,
      );
    }
    if (this.nextPacketSize !== normal * this.pageSize) {
      throw new MultifdError(
        `multifd: received packet with ${normal} pages announcing ${this.nextPacketSize} ` +
          `bytes of page data, expected ${normal * this.pageSize}`,
      );
    }
    this.normalCount = normal;
    this.zeroCount = zero;
    if (normal === 0 && zero === 0) {
      this.block = '';
      return;
    }
    this.block = this.#nameAt(b);
    let at: number = RAM.offsets;
    for (let i = 0; i < normal; i++, at += 8) this.normal[i] = u64At(b, at, 'page offset');
    for (let i = 0; i < zero; i++, at += 8) this.zero[i] = u64At(b, at, 'page offset');
  }

  /**
   * The offsets must be pages inside a block of `usedLength` bytes: QEMU's bound, and page
   * alignment, which QEMU does not check (its receiver would write across two pages).
   */
  checkIn(usedLength: number): void {
    const max = usedLength - this.pageSize;
    const check = (offset: number): void => {
      if (offset > max) {
        throw new MultifdError(
          `multifd: offset too long ${offset} (max ${hex(usedLength)}) in RAM block '${this.block}'`,
        );
      }
      if (offset % this.pageSize !== 0) {
        throw new MultifdError(
          `multifd: offset 0x${hex(offset)} in RAM block '${this.block}' is not page aligned`,
        );
      }
    };
    for (let i = 0; i < this.normalCount; i++) check(this.normal[i]!);
    for (let i = 0; i < this.zeroCount; i++) check(this.zero[i]!);
  }

  /** `pstrcpy(ramblock, 256, idstr)`, cached for the block of the last packet. */
  #nameOf(block: string): Buffer {
    if (block !== this.#name) {
      const bytes = Buffer.from(block, 'latin1');
      if (bytes.length >= MULTIFD_IDSTR_SIZE || bytes.toString('latin1') !== block) {
        throw new RangeError(`RAM block '${block}' does not fit a multifd packet's ramblock`);
      }
      this.#nameBytes = bytes;
      this.#name = block;
    }
    return this.#nameBytes;
  }

  /** The NUL-terminated block name; byte 255 counts as the terminator, as in QEMU. */
  #nameAt(b: Buffer): string {
    const field = b.subarray(RAM.ramblock, RAM.ramblock + MULTIFD_IDSTR_SIZE - 1);
    const end = field.indexOf(0);
    const name = end < 0 ? field : field.subarray(0, end);
    if (name.equals(this.#nameBytes)) return this.#name;
    this.#nameBytes = Buffer.from(name);
    this.#name = name.toString('latin1');
    return this.#name;
  }
}

// --- device-state packets -----------------------------------------------------------------

export interface DeviceStateHeader {
  readonly idstr: string;
  readonly instanceId: number;
  /** Bytes of device state that follow. */
  readonly size: number;
}

/** `multifd_device_state_fill_packet`: the 276-byte header of `size` bytes of `idstr`'s state. */
export function encodeDeviceStateHeader(
  idstr: string,
  instanceId: number,
  size: number,
  out: Buffer = Buffer.alloc(MULTIFD_DEVICE_STATE_PACKET_SIZE),
): Buffer {
  const name = Buffer.from(idstr, 'latin1');
  if (name.length >= MULTIFD_IDSTR_SIZE || name.length === 0) {
    throw new RangeError(`device state idstr '${idstr}' does not fit a multifd packet`);
  }
  if (!(Number.isInteger(size) && size > 0 && size <= 0xffffffff)) {
    throw new RangeError(`a device state packet of ${size} bytes cannot be sent`);
  }
  out.fill(0, 0, MULTIFD_DEVICE_STATE_PACKET_SIZE);
  putPacketHeader(out, MULTIFD_FLAG_DEVICE_STATE | MULTIFD_FLAG_NOCOMP);
  name.copy(out, MULTIFD_PACKET_HDR_SIZE);
  const tail = MULTIFD_PACKET_HDR_SIZE + MULTIFD_IDSTR_SIZE;
  out.writeUInt32BE(instanceId >>> 0, tail);
  out.writeUInt32BE(size, tail + 4);
  return out;
}

/**
 * `multifd_recv_unfill_packet_device_state` and the checks of `multifd_device_state_recv` and
 * `multifd_recv_thread`, made before the payload is read, so nothing unbounded is allocated.
 */
export function parseDeviceStateHeader(buf: Buffer, flags: number): DeviceStateHeader {
  if ((flags & MULTIFD_FLAG_SYNC) !== 0) {
    throw new MultifdError('multifd: received SYNC device state packet');
  }
  const idAt = MULTIFD_PACKET_HDR_SIZE;
  if (buf[idAt + MULTIFD_IDSTR_SIZE - 1] !== 0) {
    throw new MultifdError('unterminated multifd device state idstr');
  }
  const field = buf.subarray(idAt, idAt + MULTIFD_IDSTR_SIZE);
  const idstr = field.subarray(0, field.indexOf(0)).toString('latin1');
  const tail = idAt + MULTIFD_IDSTR_SIZE;
  const instanceId = buf.readUInt32BE(tail);
  const size = buf.readUInt32BE(tail + 4);
  if (size === 0) throw new MultifdError('multifd: received empty device state packet');
  if (size > MULTIFD_DEVICE_STATE_MAX) {
    throw new MultifdError(
      `multifd: device state packet of ${size} bytes for '${idstr}' exceeds the limit of ` +
        `${MULTIFD_DEVICE_STATE_MAX}`,
    );
  }
  return { idstr, instanceId, size };
}

/** True for a packet header flagged as device state. */
export function isDeviceState(flags: number): boolean {
  return (flags & MULTIFD_FLAG_DEVICE_STATE) !== 0;
}
