/**
 * Dirty tracking of guest RAM written by device DMA (qemu-migration.md §3.5, basic version):
 * the "vfio" dirty-log listener of the VM's guest memory. Device DMA bypasses the vCPU dirty
 * log, so without this a page a device wrote during pre-copy would be lost.
 *
 * - logGlobalStart: when every VFIO device has migration and usable DMA logging (probed at
 *   init, `x-device-dirty-page-tracking` not off), start DMA logging on each, over the guest
 *   RAM spans below and above 4 GiB at page size 4096; any failure stops all and fails the
 *   start. Otherwise fall back to treating all guest RAM as perpetually dirty — what a type1
 *   container without page tracking reports — so nothing is ever lost, at the price of
 *   resending everything.
 * - logSync: skipped unless started, every device has migration and no device opted out with
 *   `x-pre-copy-dirty-page-tracking=off` while still running or in pre-copy. Each RAM mapping
 *   is reported by every device into one bitmap, which is ORed into the block's migration
 *   bitmap (IOVA = guest-physical: no vIOMMU yet).
 * - logGlobalStop: stop logging per device; failures are only reported.
 *
 * Later work: container/IOMMU (iommufd) tracking instead of the perpetual fallback, the 64-bit
 * PCI hole range, vIOMMU replay.
 */
import type { DirtyBitmap, DirtyLogListener, GuestMemory, RamMapping } from '../memory/index.ts';
import { TARGET_PAGE_SIZE } from '../memory/index.ts';
import type { IovaRange } from '../uapi/index.ts';
import { MigState, isPreCopyState, reportBitmapBytes } from '../uapi/index.ts';
import type { VfioListeners } from './events.ts';
import type { VFIOMigration } from './migration.ts';

/** The page size of DMA logging and of its reports (the host page). */
export const VFIO_DIRTY_PAGE_SIZE = TARGET_PAGE_SIZE;
const PAGE = BigInt(VFIO_DIRTY_PAGE_SIZE);
const FOUR_GIB = 2 ** 32;

/** How dirty pages written by DMA are found this migration. */
export type VfioDirtyTrackingMode =
  /** not started, or no VFIO device */
  | 'off'
  /** DMA logging on every device */
  | 'device'
  /** no usable tracker: all guest RAM is dirty at every sync */
  | 'perpetual';

/** A VFIO device of the VM as dirty tracking sees it: its migration, or null without one. */
export type VfioTrackedDevice = VFIOMigration | null;

/** `vfio_device_dirty_pages_supported`: logging probed and not switched off. */
export function deviceDirtyTrackingUsable(m: VFIOMigration): boolean {
  return m.dirtyPagesSupported && m.properties['x-device-dirty-page-tracking'];
}

/**
 * The DMA-logging ranges: the span of guest RAM below 4 GiB and the span above (QEMU's
 * `min32..max32`, `min64..max64`; the 64-bit PCI hole is not modelled).
 */
export function dmaLoggingRanges(mappings: readonly RamMapping[]): IovaRange[] {
  const spans: { lo: number; hi: number }[] = [];
  for (const below of [true, false]) {
    const ms = mappings.filter((m) => m.gpa < FOUR_GIB === below);
    if (ms.length === 0) continue;
    spans.push({
      lo: Math.min(...ms.map((m) => m.gpa)),
      hi: Math.max(...ms.map((m) => m.gpa + m.length)),
    });
  }
  return spans.map((s) => ({ iova: BigInt(s.lo), length: BigInt(s.hi - s.lo) }));
}

export class VfioDirtyTracking implements DirtyLogListener {
  readonly name = 'vfio';
  readonly #memory: GuestMemory;
  readonly #devices: () => readonly VfioTrackedDevice[];
  readonly #listeners: VfioListeners;
  #mode: VfioDirtyTrackingMode = 'off';
  /** One report bitmap per RAM mapping, reused at every sync. */
  #reports: Uint8Array[] = [];

  constructor(
    memory: GuestMemory,
    devices: () => readonly VfioTrackedDevice[],
    listeners: VfioListeners,
  ) {
    this.#memory = memory;
    this.#devices = devices;
    this.#listeners = listeners;
  }

  get mode(): VfioDirtyTrackingMode {
    return this.#mode;
  }

  /** `vfio_listener_log_global_start`. */
  async logGlobalStart(): Promise<void> {
    const devices = this.#devices();
    if (devices.length === 0) return;
    if (!devices.every((m) => m !== null && deviceDirtyTrackingUsable(m))) {
      this.#mode = 'perpetual';
      return;
    }
    const migrations = devices as readonly VFIOMigration[];
    const ranges = dmaLoggingRanges(this.#memory.mappings);
    try {
      for (const m of migrations) {
        if (m.dirtyTracking) continue;
        try {
          await m.device.dmaLogging.start(ranges, PAGE);
        } catch (err) {
          throw new Error(`${m.name}: Failed to start DMA logging: ${message(err)}`, {
            cause: err,
          });
        }
        m.dirtyTracking = true;
      }
    } catch (err) {
      await this.#stopDevices(migrations);
      throw err;
    }
    this.#reports = this.#memory.mappings.map(
      (m) => new Uint8Array(reportBitmapBytes(BigInt(m.length), PAGE)),
    );
    this.#mode = 'device';
  }

  /** `vfio_listener_log_global_stop`. */
  async logGlobalStop(): Promise<void> {
    const mode = this.#mode;
    this.#mode = 'off';
    this.#reports = [];
    if (mode === 'device') {
      await this.#stopDevices(this.#devices().filter((m) => m !== null));
    }
  }

  /** `vfio_listener_log_sync` over every RAM mapping. */
  async logSync(_final: boolean): Promise<void> {
    if (this.#mode === 'off' || !this.#syncNeeded()) return;
    const mappings = this.#memory.mappings;
    for (let i = 0; i < mappings.length; i++) {
      const m = mappings[i]!;
      const first = m.offset / VFIO_DIRTY_PAGE_SIZE;
      const pages = m.length / VFIO_DIRTY_PAGE_SIZE;
      if (this.#mode === 'perpetual') {
        m.block.bitmap.setDirty(first, pages);
        continue;
      }
      const report = this.#reports[i]!;
      report.fill(0);
      for (const dev of this.#devices()) {
        // A device hot-added after the start has no log to report (QEMU forbids that).
        if (dev?.dirtyTracking === true) await this.#report(dev, m, report);
      }
      orReportBitmap(report, pages, m.block.bitmap, first);
    }
  }

  /** `vfio_log_sync_needed`. */
  #syncNeeded(): boolean {
    return this.#devices().every(
      (m) =>
        m !== null &&
        (m.properties['x-pre-copy-dirty-page-tracking'] || !deviceRunsOrPrecopies(m.state.current)),
    );
  }

  async #report(m: VFIOMigration, map: RamMapping, bitmap: Uint8Array): Promise<void> {
    try {
      await m.device.dmaLogging.report(BigInt(map.gpa), BigInt(map.length), PAGE, bitmap);
    } catch (err) {
      throw new Error(
        `${m.name}: Failed to get DMA logging report, iova: 0x${map.gpa.toString(16)}, ` +
          `size: 0x${map.length.toString(16)}: ${message(err)}`,
        { cause: err },
      );
    }
  }

  /** `vfio_devices_dma_logging_stop`: warnings only. */
  async #stopDevices(devices: readonly VFIOMigration[]): Promise<void> {
    for (const m of devices) {
      if (!m.dirtyTracking) continue;
      try {
        await m.device.dmaLogging.stop();
      } catch (err) {
        this.#listeners.warning?.(`${m.name}: Failed to stop DMA logging: ${message(err)}`);
      }
      m.dirtyTracking = false;
    }
  }
}

/** `vfio_device_state_is_running` or `..._is_precopy`. */
function deviceRunsOrPrecopies(s: MigState): boolean {
  return s === MigState.RUNNING || s === MigState.RUNNING_P2P || isPreCopyState(s);
}

/**
 * `cpu_physical_memory_set_dirty_lebitmap`: ORs a report bitmap (bit k = page k, little-endian
 * u64 words, so little-endian u32 halves) of `pages` pages into `target` from page `first`.
 * Whole 32-page words when `first` is word-aligned, bit by bit otherwise; no allocation.
 */
export function orReportBitmap(
  report: Uint8Array,
  pages: number,
  target: DirtyBitmap,
  first: number,
): void {
  const aligned = (first & 31) === 0;
  for (let w = 0; w * 32 < pages; w++) {
    const o = w * 4;
    let bits =
      report[o]! | (report[o + 1]! << 8) | (report[o + 2]! << 16) | (report[o + 3]! << 24) | 0;
    const left = pages - w * 32;
    if (left < 32) bits &= (1 << left) - 1;
    if (bits === 0) continue;
    if (aligned) {
      target.orWord((first >>> 5) + w, bits);
      continue;
    }
    for (let b = 0; b < 32; b++) if ((bits >>> b) & 1) target.setDirty(first + w * 32 + b);
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
