/**
 * In-band commands: `u8 QEMU_VM_COMMAND, u16 cmd, u16 len, data` (qemu-migration.md §1.1).
 * The sender flushes right after a command. Values follow QEMU's enum order.
 */
import { QEMU_VM_COMMAND } from './constants.ts';
import { putTypedMessage, readTypedMessage, u32Payload } from './typed-message.ts';
import type { MessageSpec, MessageTable, TypedMessage } from './typed-message.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export const MIG_CMD_INVALID = 0;
export const MIG_CMD_OPEN_RETURN_PATH = 1;
export const MIG_CMD_PING = 2;
export const MIG_CMD_POSTCOPY_ADVISE = 3;
export const MIG_CMD_POSTCOPY_LISTEN = 4;
export const MIG_CMD_POSTCOPY_RUN = 5;
export const MIG_CMD_POSTCOPY_RAM_DISCARD = 6;
export const MIG_CMD_PACKAGED = 7;
export const MIG_CMD_ENABLE_COLO = 8;
export const MIG_CMD_POSTCOPY_RESUME = 9;
export const MIG_CMD_RECV_BITMAP = 10;
export const MIG_CMD_SWITCHOVER_START = 11;
export const MIG_CMD_MAX = 12;

const SPECS: MessageSpec[] = [];
SPECS[MIG_CMD_OPEN_RETURN_PATH] = { name: 'OPEN_RETURN_PATH', len: 0 };
SPECS[MIG_CMD_PING] = { name: 'PING', len: 4 };
SPECS[MIG_CMD_POSTCOPY_ADVISE] = {
  name: 'POSTCOPY_ADVISE',
  len: null,
  // Either nothing (no postcopy-ram) or the source's page-size summary and target page size.
  check: (d) => (d.length === 0 || d.length === 16 ? null : `bad length ${d.length} (0 or 16)`),
};
SPECS[MIG_CMD_POSTCOPY_LISTEN] = { name: 'POSTCOPY_LISTEN', len: 0 };
SPECS[MIG_CMD_POSTCOPY_RUN] = { name: 'POSTCOPY_RUN', len: 0 };
SPECS[MIG_CMD_POSTCOPY_RAM_DISCARD] = { name: 'POSTCOPY_RAM_DISCARD', len: null };
SPECS[MIG_CMD_PACKAGED] = { name: 'PACKAGED', len: 4 };
SPECS[MIG_CMD_ENABLE_COLO] = { name: 'ENABLE_COLO', len: 0 };
SPECS[MIG_CMD_POSTCOPY_RESUME] = { name: 'POSTCOPY_RESUME', len: 0 };
SPECS[MIG_CMD_RECV_BITMAP] = { name: 'RECV_BITMAP', len: null };
SPECS[MIG_CMD_SWITCHOVER_START] = { name: 'SWITCHOVER_START', len: 0 };

export const MIG_CMD_TABLE: MessageTable = { kind: 'command', specs: SPECS, maxLen: 0xffff };

export type MigCommand = TypedMessage;

/** Writes a command; the caller flushes (QEMU flushes every command at once). */
export function putCommand(w: QEMUFileWriter, cmd: number, data?: Uint8Array): void {
  w.putU8(QEMU_VM_COMMAND);
  putTypedMessage(w, MIG_CMD_TABLE, cmd, data);
}

export function putCommandOpenReturnPath(w: QEMUFileWriter): void {
  putCommand(w, MIG_CMD_OPEN_RETURN_PATH);
}

export function putCommandPing(w: QEMUFileWriter, value: number): void {
  putCommand(w, MIG_CMD_PING, u32Payload(value));
}

export function putCommandSwitchoverStart(w: QEMUFileWriter): void {
  putCommand(w, MIG_CMD_SWITCHOVER_START);
}

/** PACKAGED announces a blob of `length` bytes that follows the command. */
export function putCommandPackaged(w: QEMUFileWriter, length: number): void {
  putCommand(w, MIG_CMD_PACKAGED, u32Payload(length));
}

/** The command after readSectionType() returned QEMU_VM_COMMAND. */
export function readCommand(r: QEMUFileReader): Promise<MigCommand> {
  return readTypedMessage(r, MIG_CMD_TABLE);
}
