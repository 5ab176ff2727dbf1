/**
 * A vfio-pci device's migration side from realize to unplug: `vfio_migration_realize`,
 * `vfio_migration_init` and `vfio_migration_exit` (qemu-migration.md §1.2, §3.4;
 * vfio-uapi.md §10 "Setup").
 *
 * Realize: `enable-migration=off` blocks. Otherwise GET MIGRATION (ENOTTY: the device does not
 * support migration), STOP_COPY required, PROBE DMA_LOGGING_START; then the savevm entry
 * `"<PCI path>/vfio"` (instance auto, version 1), the VM-state handler (with `prepare` only for
 * P2P devices) and the migration notifier. After that, in QEMU's order: neither device nor
 * IOMMU dirty tracking blocks in `auto` (the migration stays set up, as in QEMU), and in `on`
 * only warns — unless a type1 container's bitmap could not cover guest RAM; then the
 * multiple-devices rule; then device dirty tracking behind a vIOMMU. With
 * `enable-migration=on` every blocker is a realize error instead.
 */
import type { VfioMigrationDevice } from '../device/device.ts';
import type { VmChangeStateEntry, VmRunControl } from '../guest/index.ts';
import type { MigrationBlockers } from '../migration/blockers.ts';
import type { MigrationNotifiers } from '../migration/notifiers.ts';
import type { IommuContainer } from '../memory/iommu/index.ts';
import { IOMMU_PAGE_SIZE } from '../memory/iommu/index.ts';
import type { SaveStateEntry, SaveVMRegistry } from '../migration/savevm/registry.ts';
import { Errno, VFIO_MIGRATION_STOP_COPY, isVfioError } from '../uapi/index.ts';
import type { MigrationFlags } from '../uapi/index.ts';
import { blockMigration, vfioBlockerMessages } from './blockers.ts';
import { errorMessage } from './error-message.ts';
import type { MultipleDevicesBlocker } from './blockers.ts';
import { deviceDirtyTrackingUsable } from './dirty-tracking.ts';
import type { VfioEnvironment } from './events.ts';
import { parsePciAddress, pciDepth, peripheralQomPath, vfioSavevmIdstr } from './id-path.ts';
import { VFIOMigration, vfioSaveVMHandlers } from './migration.ts';
import { addVfioMigrationNotifier } from './notifier.ts';
import type { VfioPciProperties } from './properties.ts';
import type { VfioMigrationStats } from './stats.ts';
import { addVfioVmStateHandler } from './vm-state.ts';

/** The VM a device is realized into. */
export interface VfioHost {
  readonly registry: SaveVMRegistry;
  readonly runControl: VmRunControl;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly env: VfioEnvironment;
  readonly stats: VfioMigrationStats;
  readonly multipleDevices: MultipleDevicesBlocker;
  /** Every device's migration, this one's included once it exists. */
  migrations(): readonly VFIOMigration[];
  /** The container the device sits in, and whether its address space is a vIOMMU's. */
  readonly container: IommuContainer;
  readonly viommuPresent: boolean;
  /** Guest RAM bytes (`current_machine->ram_size`). */
  readonly ramSize: number;
}

/** Size of the 64-bit BAR of every VFIO PCI device, where peers write (P2P). */
export const VFIO_PCI_BAR_SIZE = 1 << 20;

/**
 * `vfio_dirty_tracking_exceed_limit`: a legacy type1 container tracking dirty pages cannot
 * hand out a bitmap for more than `max_dirty_bitmap_size × 8` pages (8 TiB by default).
 */
export function dirtyTrackingExceedsLimit(container: IommuContainer, ramSize: number): boolean {
  if (!container.legacyType1 || !container.dirtyPagesSupported) return false;
  return ramSize > container.maxDirtyBitmapSize * 8 * IOMMU_PAGE_SIZE;
}

export class VfioPciDevice {
  readonly device: VfioMigrationDevice;
  /** qdev id, e.g. "nic0". */
  readonly name: string;
  /** Guest PCI path, e.g. "0000:00:05.0". */
  readonly path: string;
  readonly qomPath: string;
  readonly properties: VfioPciProperties;
  /** The 64-bit BAR peers write to, in guest-physical (= IOVA) space. */
  readonly bar: { readonly iova: number; readonly length: number };
  /** Set when migration was initialized (`vbasedev->migration`). */
  migration: VFIOMigration | null = null;
  /** This device's own blocker reason (`vbasedev->migration_blocker`). */
  blocker: string | null = null;
  readonly #host: VfioHost;
  #removeBlocker: (() => void) | null = null;
  #savevm: SaveStateEntry | null = null;
  #vmState: VmChangeStateEntry | null = null;
  #removeNotifier: (() => void) | null = null;

  constructor(
    device: VfioMigrationDevice,
    path: string,
    properties: VfioPciProperties,
    host: VfioHost,
    bar: { iova: number; length: number },
  ) {
    this.device = device;
    this.bar = bar;
    this.name = device.id;
    this.path = path;
    this.qomPath = peripheralQomPath(device.id);
    this.properties = properties;
    this.#host = host;
  }

  /** The savevm idstr, `"<path>/vfio"`. */
  get idstr(): string {
    return vfioSavevmIdstr(this.path);
  }

  /** `vfio_migration_realize`. Throws VfioRealizeError when `enable-migration=on` fails. */
  async realize(): Promise<void> {
    const enable = this.properties['enable-migration'];
    if (enable === 'off') {
      this.#block(vfioBlockerMessages.disabled(this.name));
      return;
    }
    const init = await this.#init();
    if (init !== null) {
      this.#block(init);
      return;
    }
    const m = this.migration!;
    const host = this.#host;
    try {
      if (!deviceDirtyTrackingUsable(m) && !host.container.iommuDirtyTracking) {
        const reason = vfioBlockerMessages.noDirtyTracking(this.name);
        if (enable === 'auto') {
          this.#block(reason);
          return;
        }
        if (dirtyTrackingExceedsLimit(host.container, host.ramSize)) {
          this.#block(vfioBlockerMessages.dirtyTrackingLimit(this.name));
          return;
        }
        host.env.listeners.warning?.(reason);
      }
      host.multipleDevices.block(host.migrations(), enable);
      if (deviceDirtyTrackingUsable(m) && host.viommuPresent) {
        this.#block(vfioBlockerMessages.viommu(this.name));
        return;
      }
    } catch (err) {
      this.#deinit();
      throw err;
    }
  }

  /** `vfio_migration_exit`, at unplug. */
  exit(): void {
    this.#deinit();
    this.#removeBlocker?.();
    this.#removeBlocker = null;
    this.blocker = null;
  }

  /** `vfio_migration_init`: null on success, else the blocker reason. */
  async #init(): Promise<string | null> {
    let flags: MigrationFlags;
    try {
      flags = await this.device.migrationFlags();
    } catch (err) {
      if (isVfioError(err, 'ENOTTY')) return vfioBlockerMessages.notSupported(this.name);
      const errno = isVfioError(err) ? err.errno : Errno.EIO;
      return vfioBlockerMessages.initFailed(this.name, errno, errorMessage(err));
    }
    if ((flags & VFIO_MIGRATION_STOP_COPY) === 0) {
      return vfioBlockerMessages.initFailed(
        this.name,
        Errno.EOPNOTSUPP,
        'EOPNOTSUPP: the device lacks VFIO_MIGRATION_STOP_COPY',
      );
    }
    const host = this.#host;
    const m = new VFIOMigration({
      device: this.device,
      name: this.name,
      qomPath: this.qomPath,
      flags,
      dirtyPagesSupported: await this.device.dmaLogging.probe().catch(() => false),
      properties: this.properties,
      env: host.env,
      stats: host.stats,
    });
    this.#savevm = host.registry.register(this.idstr, vfioSaveVMHandlers(m), {
      instanceId: 'auto',
      versionId: 1,
    });
    this.#vmState = addVfioVmStateHandler(host.runControl, m, pciDepth(parsePciAddress(this.path)));
    this.#removeNotifier = addVfioMigrationNotifier(host.notifiers, m, host.env.listeners);
    this.migration = m;
    return null;
  }

  /** `vfio_migration_deinit`. */
  #deinit(): void {
    if (this.migration === null) return;
    this.#removeNotifier?.();
    this.#vmState?.remove();
    if (this.#savevm !== null) this.#host.registry.unregister(this.#savevm);
    this.#removeNotifier = null;
    this.#vmState = null;
    this.#savevm = null;
    this.migration = null;
    this.#host.multipleDevices.unblock(this.#host.migrations());
  }

  #block(reason: string): void {
    this.#removeBlocker = blockMigration(
      this.#host.blockers,
      this.properties['enable-migration'],
      reason,
    );
    this.blocker = reason;
  }
}
