/**
 * The start of a main channel (qemu-migration.md §1.1): the file header (magic, version) and
 * the configuration section, byte for byte as QEMU writes them. The configuration is the
 * vmstate "configuration": `u32 len` + machine-type name, then the optional subsections
 * target-page-bits, capabilities and uuid, in that order. It has no footer.
 */
import {
  QEMU_VM_CONFIGURATION,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_FILE_VERSION_COMPAT,
} from './constants.ts';
import { badInput } from './errors.ts';
import { putIdstr, readIdstr } from './idstr.ts';
import type { QEMUFileReader } from './reader.ts';
import { putSubsectionHeader, readSubsectionHeader, subsectionFollows } from './vmstate.ts';
import type { QEMUFileWriter } from './writer.ts';

export const CONFIGURATION_VMSD = 'configuration';
export const SUBSECTION_TARGET_PAGE_BITS = 'configuration/target-page-bits';
export const SUBSECTION_CAPABILITIES = 'configuration/capabilities';
export const SUBSECTION_UUID = 'configuration/uuid';
/** Every configuration subsection is at version 1. */
const SUBSECTION_VERSION = 1;

/** Bounds for decoding: QEMU machine names are short, and it has about 25 capabilities. */
export const MACHINE_TYPE_MAX = 256;
export const CAPABILITIES_MAX = 64;
export const UUID_SIZE = 16;

export interface MigrationConfiguration {
  /** e.g. "pc-q35-7.2" or "none". */
  machineType: string;
  /** Only sent when the target's page size is above its minimum (not on x86). */
  targetPageBits?: number;
  /** Names of the enabled validatable capabilities (x-ignore-shared, mapped-ram). */
  capabilities?: readonly string[];
  /** Only sent with validate-uuid and a VM uuid. */
  uuid?: Uint8Array;
}

export function putFileHeader(w: QEMUFileWriter): void {
  w.putBe32(QEMU_VM_FILE_MAGIC);
  w.putBe32(QEMU_VM_FILE_VERSION);
}

export async function readFileHeader(r: QEMUFileReader): Promise<void> {
  const at = r.offset;
  const magic = await r.getBe32('file magic');
  if (magic !== QEMU_VM_FILE_MAGIC) {
    throw badInput(
      at,
      'file magic',
      `0x${hex32(magic)} is not QEVM (0x${hex32(QEMU_VM_FILE_MAGIC)})`,
    );
  }
  const version = await r.getBe32('file version');
  if (version === QEMU_VM_FILE_VERSION_COMPAT) {
    throw badInput(at + 4, 'file version', 'version 2 is obsolete and no longer supported');
  }
  if (version !== QEMU_VM_FILE_VERSION) {
    throw badInput(at + 4, 'file version', `unsupported version ${version}`);
  }
}

/** `QEMU_VM_CONFIGURATION` and the configuration vmstate. */
export function putConfiguration(w: QEMUFileWriter, cfg: MigrationConfiguration): void {
  const name = Buffer.from(cfg.machineType, 'latin1');
  if (name.length > MACHINE_TYPE_MAX) {
    throw new RangeError(`machine type '${cfg.machineType}' is longer than ${MACHINE_TYPE_MAX}`);
  }
  w.putU8(QEMU_VM_CONFIGURATION);
  w.putBe32(name.length);
  w.putBuffer(name);
  if (cfg.targetPageBits !== undefined) {
    putSubsectionHeader(w, SUBSECTION_TARGET_PAGE_BITS, SUBSECTION_VERSION);
    w.putBe32(cfg.targetPageBits);
  }
  if (cfg.capabilities !== undefined && cfg.capabilities.length > 0) {
    putSubsectionHeader(w, SUBSECTION_CAPABILITIES, SUBSECTION_VERSION);
    w.putBe32(cfg.capabilities.length);
    for (const cap of cfg.capabilities) putIdstr(w, cap, 'capability name');
  }
  if (cfg.uuid !== undefined) {
    if (cfg.uuid.length !== UUID_SIZE) throw new RangeError(`uuid must be ${UUID_SIZE} bytes`);
    putSubsectionHeader(w, SUBSECTION_UUID, SUBSECTION_VERSION);
    w.putBuffer(cfg.uuid);
  }
}

/** Reads `QEMU_VM_CONFIGURATION` and the configuration vmstate with its subsections. */
export async function readConfiguration(r: QEMUFileReader): Promise<MigrationConfiguration> {
  const at = r.offset;
  const type = await r.getU8('configuration section type');
  if (type !== QEMU_VM_CONFIGURATION) {
    throw badInput(at, 'configuration section', `missing (got byte 0x${type.toString(16)})`);
  }
  const len = await r.getBe32('machine type length');
  const machineType = (await r.getBytes(len, 'machine type', MACHINE_TYPE_MAX)).toString('latin1');
  const cfg: MigrationConfiguration = { machineType };
  const seen = new Set<string>();
  while (await subsectionFollows(r)) {
    const subAt = r.offset;
    const sub = await readSubsectionHeader(r, CONFIGURATION_VMSD);
    const what = `subsection ${sub.name}`;
    if (seen.has(sub.name)) throw badInput(subAt, what, 'appears twice');
    seen.add(sub.name);
    if (sub.versionId > SUBSECTION_VERSION) {
      throw badInput(subAt, what, `version ${sub.versionId} is newer than ${SUBSECTION_VERSION}`);
    }
    switch (sub.name) {
      case SUBSECTION_TARGET_PAGE_BITS:
        cfg.targetPageBits = await r.getBe32('target page bits');
        break;
      case SUBSECTION_CAPABILITIES:
        cfg.capabilities = await readCapabilities(r);
        break;
      case SUBSECTION_UUID:
        cfg.uuid = await r.getBytes(UUID_SIZE, 'uuid', UUID_SIZE);
        break;
      default:
        throw badInput(subAt, what, 'unknown subsection of configuration');
    }
  }
  return cfg;
}

async function readCapabilities(r: QEMUFileReader): Promise<string[]> {
  const at = r.offset;
  const count = await r.getBe32('capability count');
  if (count > CAPABILITIES_MAX) {
    throw badInput(at, 'capability count', `${count} exceeds the limit of ${CAPABILITIES_MAX}`);
  }
  const caps: string[] = [];
  for (let i = 0; i < count; i++) caps.push(await readIdstr(r, 'capability name'));
  return caps;
}

/** What the destination itself runs with, to check a received configuration against. */
export interface LocalConfiguration {
  machineType: string;
  /** The target's page bits and its minimum (12 and 12 on x86). */
  targetPageBits: number;
  targetPageBitsMin: number;
  /** Capabilities QEMU validates (x-ignore-shared, mapped-ram): the enabled ones. */
  validatedCapabilities: readonly string[];
  enabledCapabilities: readonly string[];
  /** Set when the destination has a uuid and validate-uuid. */
  uuid?: Uint8Array;
}

/**
 * The checks QEMU's configuration post_load makes (qemu-migration.md §1.1: "the loader fails
 * on machine-type, page-bits or capability mismatch"). Returns the first mismatch, in QEMU's
 * words, or null.
 */
export function configurationMismatch(
  got: MigrationConfiguration,
  local: LocalConfiguration,
): string | null {
  if (got.machineType !== local.machineType) {
    return `Machine type received is '${got.machineType}' and local is '${local.machineType}'`;
  }
  const pageBits = got.targetPageBits ?? local.targetPageBitsMin;
  if (pageBits !== local.targetPageBits) {
    return `Received TARGET_PAGE_BITS is ${pageBits} but local is ${local.targetPageBits}`;
  }
  const received = new Set(got.capabilities ?? []);
  for (const cap of received) {
    if (!local.validatedCapabilities.includes(cap)) return `Received unknown capability ${cap}`;
  }
  for (const cap of local.validatedCapabilities) {
    const here = local.enabledCapabilities.includes(cap);
    if (here !== received.has(cap)) {
      return `Capability ${cap} is ${onOff(here)}, but received capability is ${onOff(!here)}`;
    }
  }
  if (local.uuid !== undefined && got.uuid !== undefined) {
    if (!Buffer.from(local.uuid).equals(Buffer.from(got.uuid))) {
      return 'UUID received does not match the local UUID';
    }
  }
  return null;
}

function onOff(v: boolean): string {
  return v ? 'on' : 'off';
}

function hex32(v: number): string {
  return v.toString(16).padStart(8, '0');
}
