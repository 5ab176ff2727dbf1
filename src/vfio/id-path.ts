/**
 * How a VFIO device is named in a migration (qemu-migration.md §1.2). QEMU builds the savevm
 * idstr from the device's qdev id path, which for PCI is the guest PCI address: the root bus
 * `DDDD:BB` followed by one `:SS.F` per level, e.g. `0000:00:05.0` on the root bus or
 * `0000:00:1c.0:00.0` behind a bridge. The entry is `"<path>/vfio"`. Both sides must compute
 * the same path, so it comes from the VM configuration (or the allocation order below).
 */

export interface PciAddress {
  readonly domain: number;
  readonly bus: number;
  /** slot.function per level, outermost first. */
  readonly levels: readonly { readonly slot: number; readonly fn: number }[];
}

const PATH_RE = /^([0-9a-f]{4}):([0-9a-f]{2})((?::[0-9a-f]{2}\.[0-7])+)$/i;
const LEVEL_RE = /:([0-9a-f]{2})\.([0-7])/gi;
const MAX_SLOT = 0x1f;

/** First slot handed out on bus 0 when a device has no address (slots 0–4 are the chipset's). */
export const FIRST_FREE_SLOT = 0x05;

export function parsePciAddress(text: string): PciAddress {
  const m = PATH_RE.exec(text.trim());
  if (!m) {
    throw new Error(
      `"${text}" is not a PCI device path like 0000:00:05.0 (or 0000:00:1c.0:00.0 behind a bridge)`,
    );
  }
  const levels = [...m[3]!.matchAll(LEVEL_RE)].map((l) => ({
    slot: parseInt(l[1]!, 16),
    fn: parseInt(l[2]!, 16),
  }));
  const bad = levels.find((l) => l.slot > MAX_SLOT);
  if (bad) throw new Error(`"${text}": slot 0x${bad.slot.toString(16)} is above 0x1f`);
  return { domain: parseInt(m[1]!, 16), bus: parseInt(m[2]!, 16), levels };
}

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');

/** The canonical spelling, lowercase as QEMU prints it. */
export function formatPciAddress(a: PciAddress): string {
  const levels = a.levels.map((l) => `:${hex(l.slot, 2)}.${l.fn}`).join('');
  return `${hex(a.domain, 4)}:${hex(a.bus, 2)}${levels}`;
}

/** `"<id path>/vfio"`, or bare `"vfio"` for a device without an id path. */
export function vfioSavevmIdstr(path: string | undefined): string {
  return path === undefined ? 'vfio' : `${path}/vfio`;
}

/** The QOM path of a device created with `-device ...,id=ID` (the VFIO_MIGRATION event's). */
export function peripheralQomPath(id: string): string {
  return `/machine/peripheral/${id}`;
}

/**
 * The device's depth in the device tree, used as its VM-state handler priority so parents
 * start before and stop after what sits behind them (qemu-migration.md §3.2). Only relative
 * depth matters: one per PCI level.
 */
export function pciDepth(a: PciAddress): number {
  return a.levels.length;
}

/**
 * Hands out root-bus addresses `0000:00:05.0`, `0000:00:06.0`, ... to devices without one,
 * skipping those taken explicitly. Deterministic, so two processes configured alike agree.
 */
export class PciSlotAllocator {
  readonly #taken = new Set<string>();

  /** Reserves `text` (canonicalized); throws if it is taken. */
  claim(text: string): string {
    const path = formatPciAddress(parsePciAddress(text));
    if (this.#taken.has(path)) throw new Error(`PCI address ${path} is used by two devices`);
    this.#taken.add(path);
    return path;
  }

  /** The next free root-bus slot. */
  allocate(): string {
    for (let slot = FIRST_FREE_SLOT; slot <= MAX_SLOT; slot++) {
      const path = formatPciAddress({ domain: 0, bus: 0, levels: [{ slot, fn: 0 }] });
      if (!this.#taken.has(path)) {
        this.#taken.add(path);
        return path;
      }
    }
    throw new Error('no free slot left on PCI bus 0000:00');
  }

  release(path: string): void {
    this.#taken.delete(path);
  }
}
