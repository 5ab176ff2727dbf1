/**
 * The trailing VM description (qemu-migration.md §1.1): after QEMU_VM_EOF, `u8 0x06`,
 * `u32 len`, then a JSON object describing the FULL sections, for analysis tools only. The
 * destination reads and discards it and tolerates its absence.
 *
 * The JSON is written in QEMU's json-writer style (`{"a": 1, "b": [2, 3]}`, keys in the order
 * QEMU emits them), as in a QEMU 7.2 capture:
 *   {"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0, "vmsd_name": "timer",
 *    "version": 2, "fields": [{"name": "cpu_ticks_offset", "type": "int64", "size": 8}, ...]}]}
 * QEMU 8.2+ adds a leading "configuration" object.
 */
import { QEMU_VM_VMDESCRIPTION } from './constants.ts';
import { StreamError, badInput } from './errors.ts';
import type { QEMUFileReader } from './reader.ts';
import type { QEMUFileWriter } from './writer.ts';

/** Largest description accepted by readVmdesc() (QEMU's for a big VM is a few MiB). */
export const VMDESC_MAX = 16 << 20;

/** One vmstate field: name, [index, array_len,] type, size. */
export interface VmdescField {
  name: string;
  index?: number;
  array_len?: number;
  type: string;
  size: number;
}

/** A vmstate description: what `vmstate_save_state` writes. */
export interface VmdescVmsd {
  vmsd_name: string;
  version: number;
  fields: VmdescField[];
  subsections?: VmdescVmsd[];
}

/** One FULL section: a vmstate, or an old-style save_state entry such as VFIO's. */
export type VmdescDevice =
  | ({ name: string; instance_id: number } & VmdescVmsd)
  | { name: string; instance_id: number; size: number; fields: VmdescField[] };

export interface Vmdesc {
  configuration?: VmdescVmsd;
  page_size: number;
  devices: VmdescDevice[];
}

/** A vmstate device entry with its keys in QEMU's order. */
export function vmdescVmsdDevice(name: string, instanceId: number, vmsd: VmdescVmsd): VmdescDevice {
  const d: VmdescDevice = {
    name,
    instance_id: instanceId,
    vmsd_name: vmsd.vmsd_name,
    version: vmsd.version,
    fields: vmsd.fields,
  };
  if (vmsd.subsections !== undefined) d.subsections = vmsd.subsections;
  return d;
}

/** An old-style (`save_state`) entry: one "data" buffer of `size` bytes. */
export function vmdescOldStyleDevice(name: string, instanceId: number, size: number): VmdescDevice {
  return {
    name,
    instance_id: instanceId,
    size,
    fields: [{ name: 'data', size, type: 'buffer' }],
  };
}

/** The whole description, keys in QEMU's order. */
export function vmdescOf(
  pageSize: number,
  devices: VmdescDevice[],
  configuration?: VmdescVmsd,
): Vmdesc {
  return configuration === undefined
    ? { page_size: pageSize, devices }
    : { configuration, page_size: pageSize, devices };
}

/** JSON text in QEMU's json-writer style. */
export function formatQemuJson(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(formatQemuJson).join(', ')}]`;
  if (typeof value === 'object') {
    const items = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${quote(k)}: ${formatQemuJson(v)}`);
    return `{${items.join(', ')}}`;
  }
  throw new TypeError(`vmdesc: cannot encode a ${typeof value}`);
}

/** JSON string with non-ASCII escaped as \uXXXX, as QEMU's writer does. */
function quote(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function putVmdesc(w: QEMUFileWriter, desc: Vmdesc | string): void {
  const json = Buffer.from(typeof desc === 'string' ? desc : formatQemuJson(desc), 'utf8');
  w.putU8(QEMU_VM_VMDESCRIPTION);
  w.putBe32(json.length);
  w.putBuffer(json);
}

/**
 * After QEMU_VM_EOF: the description's JSON text, or null when the stream ends there or the
 * next byte is not QEMU_VM_VMDESCRIPTION (left unconsumed).
 */
export async function readVmdesc(r: QEMUFileReader, cap = VMDESC_MAX): Promise<string | null> {
  if (await r.atEnd()) return null;
  if ((await r.peekU8('vmdesc marker')) !== QEMU_VM_VMDESCRIPTION) return null;
  await r.getU8('vmdesc marker');
  const len = await r.getBe32('vmdesc length');
  return (await r.getBytes(len, 'vmdesc JSON', cap)).toString('utf8');
}

/** Parses description text; malformed JSON is a StreamError at `offset`. */
export function parseVmdesc(json: string, offset = 0): Vmdesc {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    throw new StreamError(
      `vmdesc JSON at offset ${offset}: ${(err as Error).message}`,
      offset,
      'vmdesc JSON',
      { cause: err },
    );
  }
  if (
    typeof v !== 'object' ||
    v === null ||
    typeof (v as Vmdesc).page_size !== 'number' ||
    !Array.isArray((v as Vmdesc).devices)
  ) {
    throw badInput(offset, 'vmdesc JSON', 'not an object with page_size and devices');
  }
  return v as Vmdesc;
}
