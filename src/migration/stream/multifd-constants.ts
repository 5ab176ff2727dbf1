/**
 * Multifd channel constants (qemu-migration.md §4.3; QEMU's migration/multifd.h). Only the
 * numbers: the channel code that uses them lives in migration/multifd/.
 */

/** First u32 of the 64-byte `MultiFDInit_t` handshake and of every packet header. */
export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
/** `sizeof(MultiFDInit_t)`: magic, version, 16-byte UUID, u8 id, 7 reserved, 4 reserved u64. */
export const MULTIFD_INIT_SIZE = 64;
/** `sizeof(MultiFDPacketHdr_t)`: magic, version, flags. */
export const MULTIFD_PACKET_HDR_SIZE = 12;
/** `sizeof(MultiFDPacketDeviceState_t)`: header, idstr[256], instance_id, next_packet_size. */
export const MULTIFD_DEVICE_STATE_PACKET_SIZE = 276;
export const MULTIFD_IDSTR_SIZE = 256;

/**
 * `sizeof(MultiFDPacket_t)` without its offsets: header, pages_alloc, normal_pages,
 * next_packet_size, u64 packet_num, zero_pages, 1 reserved u32, 3 reserved u64, ramblock[256].
 * A RAM packet on the wire is this plus one u64 offset per page of `MULTIFD_PACKET_SIZE`,
 * whatever the number of pages it carries (`p->packet_len`).
 */
export const MULTIFD_RAM_PACKET_FIXED_SIZE = 320;
/** Guest memory one RAM packet may describe; a multiple of the target page size. */
export const MULTIFD_PACKET_SIZE = 512 << 10;

export const MULTIFD_FLAG_SYNC = 0x01;
/** Compression method, bits 1–5 of the flags. */
export const MULTIFD_FLAG_COMPRESSION_MASK = 0x3e;
export const MULTIFD_FLAG_NOCOMP = 0x00;
export const MULTIFD_FLAG_ZLIB = 0x02;
export const MULTIFD_FLAG_ZSTD = 0x04;
export const MULTIFD_FLAG_QPL = 0x08;
export const MULTIFD_FLAG_UADK = 0x10;
export const MULTIFD_FLAG_QATZIP = 0x20;
/** A device-state packet (never combined with SYNC). */
export const MULTIFD_FLAG_DEVICE_STATE = 0x40;

/** `multifd_ram_page_count()`: pages per RAM packet. */
export function multifdRamPageCount(pageSize: number): number {
  return MULTIFD_PACKET_SIZE / pageSize;
}

/** `p->packet_len` of a RAM packet: the fixed part and an offset per page it may hold. */
export function multifdRamPacketLen(pageSize: number): number {
  return MULTIFD_RAM_PACKET_FIXED_SIZE + 8 * multifdRamPageCount(pageSize);
}

/** `VFIODeviceStatePacket` (§4.2): u32 version, u32 idx, u32 flags, then data. */
export const VFIO_DEVICE_STATE_PACKET_HDR_SIZE = 12;
export const VFIO_DEVICE_STATE_PACKET_VER_CURRENT = 0;
export const VFIO_DEVICE_STATE_CONFIG_STATE = 1;
export const VFIO_DEVICE_STATE_IDX_INVALID = 0xffffffff;
