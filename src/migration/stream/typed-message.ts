/**
 * `u16 type, u16 len, len bytes`: the layout shared by in-band commands (after the
 * QEMU_VM_COMMAND byte) and return-path messages (qemu-migration.md §1.1). Each side has a
 * table of names and fixed lengths; unknown types and wrong lengths are refused, as QEMU's
 * loader and return-path thread do.
 */
import { badInput } from './errors.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

export interface MessageSpec {
  name: string;
  /** Fixed payload length, or null when variable. */
  len: number | null;
  /** Extra validation of a variable payload; returns a problem or null. */
  check?: (data: Buffer) => string | null;
}

export interface MessageTable {
  /** "command" or "return-path message", for errors. */
  kind: string;
  /** Indexed by type; type 0 (INVALID) and types past the end are refused. */
  specs: readonly MessageSpec[];
  /** Largest payload accepted. */
  maxLen: number;
}

export interface TypedMessage {
  type: number;
  name: string;
  data: Buffer;
}

const EMPTY = Buffer.alloc(0);

function specOf(table: MessageTable, type: number): MessageSpec | undefined {
  return type === 0 ? undefined : table.specs[type];
}

/** Writes a message, refusing what the peer would refuse. */
export function putTypedMessage(
  w: QEMUFileWriter,
  table: MessageTable,
  type: number,
  data: Uint8Array = EMPTY,
): void {
  const spec = specOf(table, type);
  if (spec === undefined) throw new RangeError(`invalid ${table.kind} type ${type}`);
  const problem = lengthProblem(table, spec, data);
  if (problem !== null) throw new RangeError(`${table.kind} ${spec.name}: ${problem}`);
  w.putBe16(type);
  w.putBe16(data.length);
  w.putBuffer(data);
}

export async function readTypedMessage(
  r: QEMUFileReader,
  table: MessageTable,
): Promise<TypedMessage> {
  const at = r.offset;
  const type = await r.getBe16(`${table.kind} type`);
  const len = await r.getBe16(`${table.kind} length`);
  const spec = specOf(table, type);
  if (spec === undefined) throw badInput(at, table.kind, `invalid ${table.kind} type ${type}`);
  if (len > table.maxLen) {
    throw badInput(at, `${table.kind} ${spec.name}`, `length ${len} exceeds ${table.maxLen}`);
  }
  if (spec.len !== null && spec.len !== len) {
    throw badInput(at, `${table.kind} ${spec.name}`, `bad length ${len} (expected ${spec.len})`);
  }
  const data = await r.getBytes(len, `${table.kind} ${spec.name} payload`, table.maxLen);
  const problem = lengthProblem(table, spec, data);
  if (problem !== null) throw badInput(at, `${table.kind} ${spec.name}`, problem);
  return { type, name: spec.name, data };
}

function lengthProblem(table: MessageTable, spec: MessageSpec, data: Uint8Array): string | null {
  if (data.length > table.maxLen) return `length ${data.length} exceeds ${table.maxLen}`;
  if (spec.len !== null && spec.len !== data.length) {
    return `bad length ${data.length} (expected ${spec.len})`;
  }
  return spec.check?.(Buffer.from(data.buffer, data.byteOffset, data.length)) ?? null;
}

/** The u32 payload of PING, PONG, SHUT, RESUME_ACK, PACKAGED. */
export function messageU32(m: TypedMessage): number {
  if (m.data.length !== 4) throw new RangeError(`${m.name} has no u32 payload`);
  return m.data.readUInt32BE(0);
}

export function u32Payload(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v, 0);
  return b;
}
