/**
 * Return-path messages, destination to source on the same transport once OPEN_RETURN_PATH
 * was received: `u16 type, u16 len, data` (qemu-migration.md §1.1, §2.5). The source checks
 * each length against its table and reads at most 512 bytes of payload.
 */
import { idstrAt } from './idstr.ts';
import { putTypedMessage, readTypedMessage, u32Payload } from './typed-message.ts';
import type { MessageSpec, MessageTable, TypedMessage } from './typed-message.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export const MIG_RP_MSG_INVALID = 0;
/** u32: 0 = the destination loaded fine, else it failed. */
export const MIG_RP_MSG_SHUT = 1;
/** u32: the value of a PING. */
export const MIG_RP_MSG_PONG = 2;
/** u64 start, u32 len, counted RAMBlock name (postcopy). */
export const MIG_RP_MSG_REQ_PAGES_ID = 3;
/** u64 start, u32 len (postcopy, same block as before). */
export const MIG_RP_MSG_REQ_PAGES = 4;
/** counted RAMBlock name; the bitmap follows outside the message (postcopy recovery). */
export const MIG_RP_MSG_RECV_BITMAP = 5;
export const MIG_RP_MSG_RESUME_ACK = 6;
/** The destination approves switchover (switchover-ack). */
export const MIG_RP_MSG_SWITCHOVER_ACK = 7;
export const MIG_RP_MSG_MAX = 8;

/** The source's receive buffer. */
export const MIG_RP_MSG_MAX_LEN = 512;

const REQ_PAGES_LEN = 12;

const SPECS: MessageSpec[] = [];
SPECS[MIG_RP_MSG_SHUT] = { name: 'SHUT', len: 4 };
SPECS[MIG_RP_MSG_PONG] = { name: 'PONG', len: 4 };
SPECS[MIG_RP_MSG_REQ_PAGES_ID] = {
  name: 'REQ_PAGES_ID',
  len: null,
  check: (d) =>
    d.length > REQ_PAGES_LEN && d.length === REQ_PAGES_LEN + 1 + d[REQ_PAGES_LEN]!
      ? null
      : `length ${d.length} does not match its RAMBlock name`,
};
SPECS[MIG_RP_MSG_REQ_PAGES] = { name: 'REQ_PAGES', len: REQ_PAGES_LEN };
SPECS[MIG_RP_MSG_RECV_BITMAP] = {
  name: 'RECV_BITMAP',
  len: null,
  check: (d) => (d.length >= 1 && 1 + d[0]! <= d.length ? null : 'RAMBlock name overruns message'),
};
SPECS[MIG_RP_MSG_RESUME_ACK] = { name: 'RESUME_ACK', len: 4 };
SPECS[MIG_RP_MSG_SWITCHOVER_ACK] = { name: 'SWITCHOVER_ACK', len: 0 };

export const MIG_RP_MSG_TABLE: MessageTable = {
  kind: 'return-path message',
  specs: SPECS,
  maxLen: MIG_RP_MSG_MAX_LEN,
};

export type ReturnPathMessage = TypedMessage;

export function putReturnPathMessage(w: QEMUFileWriter, type: number, data?: Uint8Array): void {
  putTypedMessage(w, MIG_RP_MSG_TABLE, type, data);
}

export function putRpShut(w: QEMUFileWriter, failed: boolean): void {
  putReturnPathMessage(w, MIG_RP_MSG_SHUT, u32Payload(failed ? 1 : 0));
}

export function putRpPong(w: QEMUFileWriter, value: number): void {
  putReturnPathMessage(w, MIG_RP_MSG_PONG, u32Payload(value));
}

export function putRpSwitchoverAck(w: QEMUFileWriter): void {
  putReturnPathMessage(w, MIG_RP_MSG_SWITCHOVER_ACK);
}

export function putRpResumeAck(w: QEMUFileWriter, value: number): void {
  putReturnPathMessage(w, MIG_RP_MSG_RESUME_ACK, u32Payload(value));
}

export function readReturnPathMessage(r: QEMUFileReader): Promise<ReturnPathMessage> {
  return readTypedMessage(r, MIG_RP_MSG_TABLE);
}

/** Decoded REQ_PAGES / REQ_PAGES_ID (rbName undefined: same block as the last request). */
export interface PageRequest {
  start: bigint;
  len: number;
  rbName: string | undefined;
}

export function pageRequestOf(m: ReturnPathMessage, offset = 0): PageRequest {
  if (m.type !== MIG_RP_MSG_REQ_PAGES && m.type !== MIG_RP_MSG_REQ_PAGES_ID) {
    throw new RangeError(`${m.name} is not a page request`);
  }
  const rbName =
    m.type === MIG_RP_MSG_REQ_PAGES_ID
      ? idstrAt(m.data, REQ_PAGES_LEN, offset, 'REQ_PAGES_ID RAMBlock name')
      : undefined;
  return { start: m.data.readBigUInt64BE(0), len: m.data.readUInt32BE(8), rbName };
}
