/**
 * The emulated PCI config space the VMM keeps for a device (what QEMU's vfio-pci saves in the
 * non-iterable phase): a 256-byte type-0 header with an MSI-X capability, plus the MSI-X table
 * itself. Guest writes go through per-byte write masks like hardware: ids, class code and the
 * capability chain are read-only.
 */
import { fail } from '../../uapi/index.ts';

export interface PciIds {
  vendorId: number;
  deviceId: number;
  /** 24-bit class code: base class, sub class, programming interface. */
  classCode: number;
  revision: number;
  msixEntries: number;
}

/** Size of the config header. */
export const PCI_CONFIG_HEADER_SIZE = 256;
/** One MSI-X table entry: address lo, address hi, data, vector control. */
export const MSIX_ENTRY_SIZE = 16;
/** The MSI-X table follows the header in `configWrite` offsets: entry i at 256 + 16 i. */
export const MSIX_TABLE_OFFSET = PCI_CONFIG_HEADER_SIZE;

const MSIX_CAP = 0x40;
const PCI_CAP_ID_MSIX = 0x11;

/** Blob layout: le32 magic, le16 version, le16 msix entries, le16 vendor, le16 device, le32 length. */
const BLOB_MAGIC = 0x47464356; // "VCFG"
const BLOB_VERSION = 1;
const BLOB_HEADER_SIZE = 16;

export class PciConfigSpace {
  readonly ids: PciIds;
  /** Header then MSI-X table. */
  readonly bytes: Uint8Array;
  readonly #writeMask: Uint8Array;
  readonly #powerOn: Uint8Array;

  constructor(ids: PciIds) {
    if (!Number.isInteger(ids.msixEntries) || ids.msixEntries < 1 || ids.msixEntries > 2048) {
      throw new Error(`MSI-X table size ${ids.msixEntries} is outside 1..2048`);
    }
    this.ids = ids;
    const size = PCI_CONFIG_HEADER_SIZE + ids.msixEntries * MSIX_ENTRY_SIZE;
    this.#powerOn = new Uint8Array(size);
    const dv = new DataView(this.#powerOn.buffer);
    dv.setUint16(0x00, ids.vendorId, true);
    dv.setUint16(0x02, ids.deviceId, true);
    dv.setUint16(0x06, 0x0010, true); // status: capabilities list present
    this.#powerOn[0x08] = ids.revision;
    this.#powerOn[0x09] = ids.classCode & 0xff;
    this.#powerOn[0x0a] = (ids.classCode >>> 8) & 0xff;
    this.#powerOn[0x0b] = (ids.classCode >>> 16) & 0xff;
    dv.setUint16(0x2c, ids.vendorId, true); // subsystem vendor
    dv.setUint16(0x2e, ids.deviceId, true); // subsystem id
    this.#powerOn[0x34] = MSIX_CAP;
    this.#powerOn[0x3d] = 1; // INTA#
    this.#powerOn[MSIX_CAP] = PCI_CAP_ID_MSIX;
    dv.setUint16(MSIX_CAP + 2, ids.msixEntries - 1, true); // table size - 1
    dv.setUint32(MSIX_CAP + 4, 0x0000, true); // table in BAR0 at 0
    dv.setUint32(MSIX_CAP + 8, 0x0800, true); // PBA in BAR0 at 0x800
    for (let i = 0; i < ids.msixEntries; i++) {
      dv.setUint32(MSIX_TABLE_OFFSET + i * MSIX_ENTRY_SIZE + 12, 1, true); // vector masked
    }

    this.#writeMask = new Uint8Array(size);
    this.#writeMask.fill(0xff, 0x04, 0x06); // command
    this.#writeMask.fill(0xff, 0x0c, 0x0e); // cache line size, latency timer
    this.#writeMask.fill(0xff, 0x10, 0x28); // BARs
    this.#writeMask[0x3c] = 0xff; // interrupt line
    this.#writeMask[MSIX_CAP + 3] = 0xc0; // MSI-X enable, function mask
    this.#writeMask.fill(0xff, MSIX_CAP + 12, PCI_CONFIG_HEADER_SIZE); // device specific
    this.#writeMask.fill(0xff, MSIX_TABLE_OFFSET);
    for (let i = 0; i < ids.msixEntries; i++) {
      // vector control: only the mask bit is writable
      this.#writeMask.fill(
        0,
        MSIX_TABLE_OFFSET + i * MSIX_ENTRY_SIZE + 12,
        MSIX_TABLE_OFFSET + (i + 1) * MSIX_ENTRY_SIZE,
      );
      this.#writeMask[MSIX_TABLE_OFFSET + i * MSIX_ENTRY_SIZE + 12] = 0x01;
    }

    this.bytes = this.#powerOn.slice();
  }

  get size(): number {
    return this.bytes.length;
  }

  /** Back to power-on contents (a function-level reset). */
  reset(): void {
    this.bytes.set(this.#powerOn);
  }

  /** A guest write of `data` at `offset` (header, then MSI-X table); read-only bits are kept. */
  write(offset: number, data: Uint8Array): void {
    this.#checkWindow(offset, data.length, 'config write');
    for (let i = 0; i < data.length; i++) {
      const mask = this.#writeMask[offset + i]!;
      const old = this.bytes[offset + i]!;
      this.bytes[offset + i] = (old & ~mask) | (data[i]! & mask);
    }
  }

  read(offset: number, length: number): Uint8Array {
    this.#checkWindow(offset, length, 'config read');
    return this.bytes.slice(offset, offset + length);
  }

  /** The versioned blob `saveConfig` returns. */
  save(): Uint8Array {
    const blob = new Uint8Array(BLOB_HEADER_SIZE + this.size);
    const dv = new DataView(blob.buffer);
    dv.setUint32(0, BLOB_MAGIC, true);
    dv.setUint16(4, BLOB_VERSION, true);
    dv.setUint16(6, this.ids.msixEntries, true);
    dv.setUint16(8, this.ids.vendorId, true);
    dv.setUint16(10, this.ids.deviceId, true);
    dv.setUint32(12, this.size, true);
    blob.set(this.bytes, BLOB_HEADER_SIZE);
    return blob;
  }

  /** Loads a blob from `save()` of the same kind of device; anything else is EINVAL. */
  load(blob: Uint8Array): void {
    const want = BLOB_HEADER_SIZE + this.size;
    if (blob.length !== want) {
      fail('EINVAL', `config blob is ${blob.length} bytes, this device needs ${want}`);
    }
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const magic = dv.getUint32(0, true);
    if (magic !== BLOB_MAGIC) fail('EINVAL', `config blob magic 0x${magic.toString(16)} is wrong`);
    const version = dv.getUint16(4, true);
    if (version !== BLOB_VERSION) {
      fail('EINVAL', `config blob version ${version} is not ${BLOB_VERSION}`);
    }
    const entries = dv.getUint16(6, true);
    const vendor = dv.getUint16(8, true);
    const device = dv.getUint16(10, true);
    if (
      vendor !== this.ids.vendorId ||
      device !== this.ids.deviceId ||
      entries !== this.ids.msixEntries ||
      dv.getUint32(12, true) !== this.size
    ) {
      fail(
        'EINVAL',
        `config blob is for ${hex4(vendor)}:${hex4(device)} with ${entries} MSI-X entries, ` +
          `this device is ${hex4(this.ids.vendorId)}:${hex4(this.ids.deviceId)} with ${this.ids.msixEntries}`,
      );
    }
    const payload = blob.subarray(BLOB_HEADER_SIZE);
    for (let i = 0; i < this.size; i++) {
      const fixed = ~this.#writeMask[i]! & 0xff;
      if ((payload[i]! & fixed) !== (this.#powerOn[i]! & fixed)) {
        fail('EINVAL', `config blob changes read-only byte 0x${i.toString(16)}`);
      }
    }
    this.bytes.set(payload);
  }

  #checkWindow(offset: number, length: number, what: string): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) {
      fail('EINVAL', `${what}: offset ${offset} / length ${length} are not byte counts`);
    }
    if (offset + length > this.size) {
      fail(
        'EINVAL',
        `${what}: [${offset}, ${offset + length}) is outside the ${this.size}-byte config space`,
      );
    }
  }
}

function hex4(v: number): string {
  return v.toString(16).padStart(4, '0');
}
