/**
 * The record stream of the nic and gpu models, shaped like mlx5's (vfio-uapi.md §9.2):
 *
 *   record  = le64 record_size | le32 flags | le32 tag | body        (16-byte header)
 *   body    = le32 seq | tag fields [| image bytes] | le32 crc32     (record_size bytes)
 *
 * `seq` counts records from 0 (the header record), so a dropped, repeated or reordered record
 * is caught at its header; `crc32` (zlib) covers everything in the record before it, so a
 * flipped byte is caught at the end of its record. Unknown tags are refused (EOPNOTSUPP)
 * unless flagged OPTIONAL, in which case they are skipped.
 */

export const RECORD_HEADER_SIZE = 16;
export const RECORD_SEQ_SIZE = 4;
export const RECORD_CRC_SIZE = 4;
/** Bytes every record adds around its fields and data. */
export const RECORD_FRAMING = RECORD_HEADER_SIZE + RECORD_SEQ_SIZE + RECORD_CRC_SIZE;

/** A record a receiver does not know may be skipped. */
export const RECORD_FLAG_OPTIONAL = 1;
export const RECORD_KNOWN_FLAGS = RECORD_FLAG_OPTIONAL;

export const RecordTag = {
  /** Identity: le32 magic, le16 major, le16 minor, le32 model, le32 chunk size, le64 state size. */
  HEADER: 1,
  /** le64 offset, then the bytes of a range of whole state chunks. */
  IMAGE: 2,
  /** OPTIONAL. le64 expected bytes of the stop-copy phase (a hint, like mlx5's). */
  STOP_COPY_SIZE: 3,
  /** le64 total image bytes sent; nothing may follow. */
  END: 4,
} as const;
export type RecordTag = (typeof RecordTag)[keyof typeof RecordTag];

/** Size of the fixed fields after `seq`, per tag. */
export const TAG_FIELDS_SIZE: Readonly<Record<RecordTag, number>> = {
  [RecordTag.HEADER]: 24,
  [RecordTag.IMAGE]: 8,
  [RecordTag.STOP_COPY_SIZE]: 8,
  [RecordTag.END]: 8,
};

export const STREAM_MAGIC = 0x444d4953; // "SIMD"
export const STREAM_MAJOR = 1;
export const STREAM_MINOR = 0;

/** The largest record_size a receiver accepts (the device's buffer limit). */
export const RECORD_SIZE_LIMIT = 4 << 20;
/** Image records of the initial pass group chunks up to this many bytes. */
export const IMAGE_RECORD_TARGET = 1 << 20;

/** What a stream must match to load: the same model, layout and state size. */
export interface StreamIdentity {
  modelId: number;
  chunkSize: number;
  stateSize: number;
}

/** Bytes of a whole record of `tag` carrying `data` image bytes. */
export function recordBytes(tag: RecordTag, data = 0): number {
  return RECORD_FRAMING + TAG_FIELDS_SIZE[tag] + data;
}

/**
 * Writes the record header, seq and fields into `out` (which must hold them) and returns how
 * many bytes that is; `fields` writes the tag fields at the given DataView offset.
 */
export function encodeRecordPrefix(
  out: Uint8Array,
  tag: RecordTag,
  flags: number,
  seq: number,
  data: number,
  fields: (dv: DataView, at: number) => void,
): number {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const fieldsSize = TAG_FIELDS_SIZE[tag];
  dv.setBigUint64(0, BigInt(RECORD_SEQ_SIZE + fieldsSize + data + RECORD_CRC_SIZE), true);
  dv.setUint32(8, flags, true);
  dv.setUint32(12, tag, true);
  dv.setUint32(16, seq, true);
  fields(dv, RECORD_HEADER_SIZE + RECORD_SEQ_SIZE);
  return RECORD_HEADER_SIZE + RECORD_SEQ_SIZE + fieldsSize;
}

export function writeIdentity(dv: DataView, at: number, id: StreamIdentity): void {
  dv.setUint32(at, STREAM_MAGIC, true);
  dv.setUint16(at + 4, STREAM_MAJOR, true);
  dv.setUint16(at + 6, STREAM_MINOR, true);
  dv.setUint32(at + 8, id.modelId, true);
  dv.setUint32(at + 12, id.chunkSize, true);
  dv.setBigUint64(at + 16, BigInt(id.stateSize), true);
}

/** null when the identity fields at `at` describe a stream this device can load. */
export function checkIdentity(dv: DataView, at: number, id: StreamIdentity): string | null {
  const magic = dv.getUint32(at, true);
  if (magic !== STREAM_MAGIC) return `bad stream magic 0x${magic.toString(16)}`;
  const major = dv.getUint16(at + 4, true);
  if (major !== STREAM_MAJOR)
    return `stream version ${major}.x, this device reads ${STREAM_MAJOR}.x`;
  const model = dv.getUint32(at + 8, true);
  if (model !== id.modelId) return `stream of model ${model}, this device is model ${id.modelId}`;
  const chunk = dv.getUint32(at + 12, true);
  const size = dv.getBigUint64(at + 16, true);
  if (chunk !== id.chunkSize || size !== BigInt(id.stateSize)) {
    return `stream state is ${size} bytes in ${chunk}-byte chunks, this device has ${id.stateSize} in ${id.chunkSize}`;
  }
  return null;
}
