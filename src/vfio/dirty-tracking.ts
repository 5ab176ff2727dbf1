/**
 * Dirty tracking of guest RAM written by device DMA (qemu-migration.md §3.5): the "vfio"
 * dirty-log listener of the VM's guest memory. Device DMA bypasses the vCPU dirty log, so
 * without it a page a device wrote during pre-copy would be lost.
 *
 * - logGlobalStart (`vfio_listener_log_global_start`): when every VFIO device has migration and
 *   usable DMA logging (probed at init, `x-device-dirty-page-tracking` not off), start DMA
 *   logging on each over QEMU's three ranges (below 4 GiB, above 4 GiB, the 64-bit PCI hole
 *   of the VFIO BARs) at the host page size; any failure stops all and fails the start.
 *   Otherwise start the container's tracking (type1 or iommufd). With neither, every page a
 *   sync visits is dirty at every sync — what `vfio_container_query_dirty_bitmap` does for a
 *   container without tracking. (QEMU then never syncs at all, since nothing "started"; its
 *   realize blocker keeps `auto` devices from migrating like that. We take the safe reading:
 *   nothing a device wrote is ever lost.)
 * - logSync (`vfio_listener_log_sync`): skipped unless started, every device has migration
 *   and no device opted out with `x-pre-copy-dirty-page-tracking=off` while still running or
 *   in pre-copy. Each section — a RAM mapping, or with a vIOMMU each mapping a replay finds —
 *   is queried by IOVA and its bits go to the RAM migration bitmaps at the GPA it translates
 *   to.
 * - An unmap while tracking (the guest's vIOMMU invalidates a range during pre-copy) reads
 *   the range's bits first: type1 unmaps with GET_DIRTY_BITMAP, the others query the range
 *   (`vfio_legacy_dma_unmap`), so pages written through a range that is gone are not lost.
 * - logGlobalStop: stop logging per device (failures only reported) or the container's.
 */
import type { DirtyLogListener, GuestMemory } from '../memory/index.ts';
import { TARGET_PAGE_SIZE } from '../memory/index.ts';
import type { IommuMapping } from '../memory/iommu/index.ts';
import { pageBitmapBytes } from '../memory/iommu/index.ts';
import type { IovaRange } from '../uapi/index.ts';
import { MigState, isPreCopyState } from '../uapi/index.ts';
import type { VfioContainerListener } from './container-listener.ts';
import { errorMessage } from './error-message.ts';
import type { VfioListeners } from './events.ts';
import type { VFIOMigration } from './migration.ts';

/** The page size of DMA logging and of every report (the host page). */
export const VFIO_DIRTY_PAGE_SIZE = TARGET_PAGE_SIZE;
const PAGE = BigInt(VFIO_DIRTY_PAGE_SIZE);
/** QEMU's `UINT32_MAX` split between the 32-bit and the 64-bit ranges. */
const UINT32_MAX = 0xffff_ffff;

/** How dirty pages written by DMA are found this migration. */
export type VfioDirtyTrackingMode =
  /** not started, or no VFIO device */
  | 'off'
  /** DMA logging on every device */
  | 'device'
  /** the IOMMU container's tracking (type1 or iommufd) */
  | 'container'
  /** no usable tracker: every page a sync visits is dirty */
  | 'perpetual';

/** A VFIO device of the VM as dirty tracking sees it: its migration, or null without one. */
export type VfioTrackedDevice = VFIOMigration | null;

/** A section of the container's address space, for the DMA-logging ranges. */
export interface DirtyTrackingSection {
  readonly iova: number;
  readonly length: number;
  /** Owned by a VFIO PCI device (a BAR mapped for P2P): counts in the 64-bit PCI hole. */
  readonly vfioPci?: boolean;
}

/** `vfio_device_dirty_pages_disabled` negated: logging probed and not switched off. */
export function deviceDirtyTrackingUsable(m: VFIOMigration): boolean {
  return m.dirtyPagesSupported && m.properties['x-device-dirty-page-tracking'];
}

/**
 * `vfio_dirty_tracking_init` + `vfio_device_feature_dma_logging_start_create`: the sections
 * reduced to at most three ranges — 32-bit, 64-bit, and the 64-bit PCI hole (VFIO BARs at or
 * above 4 GiB) — so big holes in the address space are not tracked.
 */
export function dmaLoggingRanges(sections: readonly DirtyTrackingSection[]): IovaRange[] {
  const span = (): { min: number; max: number } => ({ min: Infinity, max: -1 });
  const r32 = span();
  const r64 = span();
  const pci64 = span();
  for (const s of sections) {
    if (s.length <= 0) continue;
    const end = s.iova + s.length - 1; // inclusive, as QEMU keeps it
    const r = s.vfioPci === true && s.iova >= UINT32_MAX ? pci64 : end <= UINT32_MAX ? r32 : r64;
    r.min = Math.min(r.min, s.iova);
    r.max = Math.max(r.max, end);
  }
  return [r32, r64, pci64]
    .filter((r) => r.max >= 0)
    .map((r) => ({ iova: BigInt(r.min), length: BigInt(r.max - r.min + 1) }));
}

export interface VfioDirtyTrackingOptions {
  readonly memory: GuestMemory;
  readonly listener: VfioContainerListener;
  readonly devices: () => readonly VfioTrackedDevice[];
  /** The VFIO PCI BARs in the address space (the 64-bit PCI hole range). */
  readonly bars: () => readonly DirtyTrackingSection[];
  readonly listeners: VfioListeners;
}

export class VfioDirtyTracking implements DirtyLogListener {
  readonly name = 'vfio';
  readonly #memory: GuestMemory;
  readonly #listener: VfioContainerListener;
  readonly #devices: () => readonly VfioTrackedDevice[];
  readonly #bars: () => readonly DirtyTrackingSection[];
  readonly #listeners: VfioListeners;
  #mode: VfioDirtyTrackingMode = 'off';
  /** The mode of the current or last tracking session (statistics). */
  lastMode: VfioDirtyTrackingMode = 'off';
  /** Pages set by syncs and unmaps since tracking started (statistics). */
  dirtyPagesReported = 0;

  constructor(opts: VfioDirtyTrackingOptions) {
    this.#memory = opts.memory;
    this.#listener = opts.listener;
    this.#devices = opts.devices;
    this.#bars = opts.bars;
    this.#listeners = opts.listeners;
    opts.listener.setUnmap((e) => this.unmap(e));
  }

  get mode(): VfioDirtyTrackingMode {
    return this.#mode;
  }

  #setMode(mode: VfioDirtyTrackingMode): void {
    this.#mode = mode;
    if (mode !== 'off') this.lastMode = mode;
  }

  /** The DMA-logging ranges of the container's address space now. */
  ranges(): IovaRange[] {
    return dmaLoggingRanges([
      ...this.#listener.container.mappings.map((m) => ({ iova: m.iova, length: m.length })),
      ...this.#bars().map((b) => ({ ...b, vfioPci: true })),
    ]);
  }

  /** `vfio_listener_log_global_start`. */
  async logGlobalStart(): Promise<void> {
    const devices = this.#devices();
    if (devices.length === 0) return;
    this.dirtyPagesReported = 0;
    if (devices.every((m) => m !== null && deviceDirtyTrackingUsable(m))) {
      await this.#startDevices(devices as readonly VFIOMigration[]);
      this.#setMode('device');
      return;
    }
    const container = this.#listener.container;
    if (container.dirtyPagesSupported) {
      try {
        container.setDirtyTracking(true);
      } catch (err) {
        throw new Error(`vfio: Could not start dirty page tracking - ${errorMessage(err)}`, {
          cause: err,
        });
      }
      this.#setMode('container');
      return;
    }
    this.#setMode('perpetual');
  }

  /** `vfio_listener_log_global_stop`. */
  async logGlobalStop(): Promise<void> {
    const mode = this.#mode;
    this.#mode = 'off';
    if (mode === 'device') await this.#stopDevices(this.#devices().filter((m) => m !== null));
    if (mode === 'container') this.#listener.container.setDirtyTracking(false);
  }

  /** `vfio_listener_log_sync` over every section of the container's address space. */
  async logSync(_final: boolean): Promise<void> {
    if (this.#mode === 'off' || !this.#syncNeeded()) return;
    for (const s of this.#listener.syncSections()) {
      const bitmap = await this.#query(s.iova, s.length);
      this.#markDirty(s, bitmap);
    }
  }

  /**
   * An unmap of `entry` (a vIOMMU invalidation) while this tracker may be on. Tracking on:
   * the range's bits are read (with the unmap itself, for a container) and land at the GPA
   * it translated to. Device logging cannot be read synchronously here, so its range is taken
   * as dirty — a combination QEMU blocks anyway (vIOMMU with device dirty tracking).
   */
  unmap(entry: IommuMapping): void {
    const container = this.#listener.container;
    switch (this.#mode) {
      case 'container': {
        const bitmap = new Uint8Array(pageBitmapBytes(entry.length / VFIO_DIRTY_PAGE_SIZE));
        container.unmap(entry.iova, entry.length, bitmap);
        this.#markDirty(entry, bitmap);
        return;
      }
      case 'device':
      case 'perpetual':
        container.unmap(entry.iova, entry.length);
        this.#markDirty(entry, null);
        return;
      case 'off':
        container.unmap(entry.iova, entry.length);
        return;
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

  /**
   * `vfio_container_query_dirty_bitmap` of [iova, iova+length): a report bitmap, or null for
   * "all of it" (no tracker).
   */
  async #query(iova: number, length: number): Promise<Uint8Array | null> {
    if (this.#mode === 'perpetual') return null;
    const bitmap = new Uint8Array(pageBitmapBytes(length / VFIO_DIRTY_PAGE_SIZE));
    if (this.#mode === 'container') {
      this.#listener.container.queryDirtyBitmap(iova, length, bitmap);
      return bitmap;
    }
    for (const dev of this.#devices()) {
      // A device hot-added after the start has no log to report (QEMU forbids that).
      if (dev?.dirtyTracking === true) await this.#report(dev, iova, length, bitmap);
    }
    return bitmap;
  }

  /**
   * `cpu_physical_memory_set_dirty_lebitmap` (or `_set_dirty_range` for null): marks the
   * pages of `s` at the GPA it translates to, across RAM mappings if it spans several.
   */
  #markDirty(s: IommuMapping, bitmap: Uint8Array | null): void {
    const pages = s.length / VFIO_DIRTY_PAGE_SIZE;
    let done = 0;
    while (done < pages) {
      const gpa = s.gpa + done * VFIO_DIRTY_PAGE_SIZE;
      const m = this.#memory.findMapping(gpa);
      if (m === undefined) {
        done++; // not RAM (a BAR, a hole): nothing to migrate there
        continue;
      }
      const n = Math.min(pages - done, (m.gpa + m.length - gpa) / VFIO_DIRTY_PAGE_SIZE);
      const first = (m.offset + gpa - m.gpa) / VFIO_DIRTY_PAGE_SIZE;
      const target = m.block.bitmap;
      if (bitmap === null) {
        this.dirtyPagesReported += n;
        target.setDirty(first, n);
      } else {
        this.dirtyPagesReported += orReportBitmap(bitmap, n, target, first, done);
      }
      done += n;
    }
  }

  async #startDevices(migrations: readonly VFIOMigration[]): Promise<void> {
    const ranges = this.ranges();
    try {
      for (const m of migrations) {
        if (m.dirtyTracking) continue;
        try {
          await m.device.dmaLogging.start(ranges, PAGE);
        } catch (err) {
          throw new Error(`${m.name}: Failed to start DMA logging: ${errorMessage(err)}`, {
            cause: err,
          });
        }
        m.dirtyTracking = true;
      }
    } catch (err) {
      await this.#stopDevices(migrations);
      throw err;
    }
  }

  async #report(m: VFIOMigration, iova: number, length: number, bitmap: Uint8Array): Promise<void> {
    try {
      await m.device.dmaLogging.report(BigInt(iova), BigInt(length), PAGE, bitmap);
    } catch (err) {
      throw new Error(
        `${m.name}: Failed to get DMA logging report, iova: 0x${iova.toString(16)}, ` +
          `size: 0x${length.toString(16)}: ${errorMessage(err)}`,
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
        this.#listeners.warning?.(`${m.name}: Failed to stop DMA logging: ${errorMessage(err)}`);
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
 * ORs `pages` bits of a report bitmap (bit k = page k, little-endian u64 words, so
 * little-endian u32 halves), starting at bit `from`, into `target` from page `first`. Whole
 * 32-page words when both sides are word-aligned, bit by bit otherwise; no allocation.
 * Returns how many pages became dirty.
 */
export function orReportBitmap(
  report: Uint8Array,
  pages: number,
  target: { setDirty(start: number, count?: number): number; orWord(i: number, b: number): number },
  first: number,
  from = 0,
): number {
  let fresh = 0;
  if ((first & 31) === 0 && (from & 31) === 0) {
    for (let w = 0; w * 32 < pages; w++) {
      const o = (from >>> 3) + w * 4;
      let bits =
        report[o]! | (report[o + 1]! << 8) | (report[o + 2]! << 16) | (report[o + 3]! << 24) | 0;
      const left = pages - w * 32;
      if (left < 32) bits &= (1 << left) - 1;
      if (bits !== 0) fresh += target.orWord((first >>> 5) + w, bits);
    }
    return fresh;
  }
  for (let k = 0; k < pages; k++) {
    const bit = from + k;
    if ((report[bit >>> 3]! >>> (bit & 7)) & 1) fresh += target.setDirty(first + k);
  }
  return fresh;
}
