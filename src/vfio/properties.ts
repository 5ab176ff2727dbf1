/**
 * The migration properties of QEMU's vfio-pci device (qemu-migration.md §5.2), spelled as on
 * QEMU's command line so a VM configuration can pass them through unchanged:
 *
 *   enable-migration                     auto   off: blocker; on: problems fail realize (§3.4)
 *   migration-events                     off    VFIO_MIGRATION events (§5.3)
 *   x-pre-copy-dirty-page-tracking       on     off: no dirty sync while devices run (§3.5)
 *   x-device-dirty-page-tracking         on     off: never use device DMA logging (§3.5)
 *   x-migration-multifd-transfer         auto   device state over multifd channels (§4.1)
 *   x-migration-load-config-after-iter   auto   config loaded after the iterables (§4.5)
 *   x-migration-max-queued-buffers-size  2^64-1 cap on queued multifd buffers (§4.5)
 */

/** QAPI `OnOffAuto`. */
export type OnOffAuto = 'on' | 'off' | 'auto';

export interface VfioPciProperties {
  readonly 'enable-migration': OnOffAuto;
  readonly 'migration-events': boolean;
  readonly 'x-pre-copy-dirty-page-tracking': boolean;
  readonly 'x-device-dirty-page-tracking': boolean;
  readonly 'x-migration-multifd-transfer': OnOffAuto;
  readonly 'x-migration-load-config-after-iter': OnOffAuto;
  /** Bytes; UINT64_MAX means unlimited. */
  readonly 'x-migration-max-queued-buffers-size': bigint;
}

export type VfioPciPropertyName = keyof VfioPciProperties;

export const UINT64_MAX = (1n << 64n) - 1n;

export const VFIO_PCI_DEFAULT_PROPERTIES: VfioPciProperties = {
  'enable-migration': 'auto',
  'migration-events': false,
  'x-pre-copy-dirty-page-tracking': true,
  'x-device-dirty-page-tracking': true,
  'x-migration-multifd-transfer': 'auto',
  'x-migration-load-config-after-iter': 'auto',
  'x-migration-max-queued-buffers-size': UINT64_MAX,
};

/** What a caller may give for one property: its type, or the command-line text. */
export type VfioPciPropertyInput = string | boolean | number | bigint;

type Parser = (v: VfioPciPropertyInput, name: string) => VfioPciProperties[VfioPciPropertyName];

const ON_OFF_AUTO: readonly OnOffAuto[] = ['on', 'off', 'auto'];
/** The spellings QEMU's bool property visitor accepts. */
const TRUE_WORDS = ['on', 'true', 'yes'];
const FALSE_WORDS = ['off', 'false', 'no'];

function badValue(name: string, v: VfioPciPropertyInput, expected: string): Error {
  return new Error(`vfio-pci property '${name}': ${JSON.stringify(String(v))} is not ${expected}`);
}

const onOffAuto: Parser = (v, name) => {
  if (typeof v === 'string' && (ON_OFF_AUTO as readonly string[]).includes(v)) {
    return v as OnOffAuto;
  }
  throw badValue(name, v, 'one of on, off, auto');
};

const bool: Parser = (v, name) => {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && TRUE_WORDS.includes(v)) return true;
  if (typeof v === 'string' && FALSE_WORDS.includes(v)) return false;
  throw badValue(name, v, 'on or off');
};

const u64: Parser = (v, name) => {
  let n: bigint;
  try {
    if (typeof v === 'boolean') throw new Error('boolean');
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Error('not exact');
    n = BigInt(v);
  } catch {
    throw badValue(name, v, 'an unsigned 64-bit integer');
  }
  if (n < 0n || n > UINT64_MAX) throw badValue(name, v, 'an unsigned 64-bit integer');
  return n;
};

const PARSERS: Readonly<Record<VfioPciPropertyName, Parser>> = {
  'enable-migration': onOffAuto,
  'migration-events': bool,
  'x-pre-copy-dirty-page-tracking': bool,
  'x-device-dirty-page-tracking': bool,
  'x-migration-multifd-transfer': onOffAuto,
  'x-migration-load-config-after-iter': onOffAuto,
  'x-migration-max-queued-buffers-size': u64,
};

export const VFIO_PCI_PROPERTY_NAMES = Object.keys(PARSERS) as VfioPciPropertyName[];

function isPropertyName(name: string): name is VfioPciPropertyName {
  return Object.hasOwn(PARSERS, name);
}

/**
 * Properties from `enable-migration=on,migration-events=on` text or from an object (e.g. a
 * VM configuration's device entry; keys that are not vfio-pci migration properties are
 * ignored there, but refused in text). Unset properties take QEMU's defaults.
 */
export function parseVfioPciProperties(
  input: string | Readonly<Record<string, VfioPciPropertyInput | undefined>> = {},
): VfioPciProperties {
  const out: Record<string, unknown> = { ...VFIO_PCI_DEFAULT_PROPERTIES };
  const entries: [string, VfioPciPropertyInput | undefined][] =
    typeof input === 'string' ? splitText(input) : Object.entries(input);
  for (const [name, value] of entries) {
    if (!isPropertyName(name)) {
      if (typeof input === 'string') {
        throw new Error(
          `vfio-pci has no migration property '${name}' (known: ${VFIO_PCI_PROPERTY_NAMES.join(', ')})`,
        );
      }
      continue;
    }
    if (value !== undefined) out[name] = PARSERS[name](value, name);
  }
  return out as unknown as VfioPciProperties;
}

function splitText(text: string): [string, string][] {
  const seen = new Set<string>();
  const out: [string, string][] = [];
  for (const item of text.split(',')) {
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`vfio-pci properties: "${item}" is not name=value`);
    const name = item.slice(0, eq).trim();
    if (seen.has(name)) throw new Error(`vfio-pci properties: '${name}' given twice`);
    seen.add(name);
    out.push([name, item.slice(eq + 1).trim()]);
  }
  return out;
}
