/**
 * Why a VM with VFIO devices may not migrate (qemu-migration.md §3.4), with QEMU's messages.
 * A device's own reasons become its blocker — or, with `enable-migration=on`, an error that
 * fails its realize. The multiple-devices rule is one blocker for the whole VM, re-evaluated
 * when a device goes away. Refusing postcopy is not a blocker: see VFIOMigration.savePrepare.
 */
import type { MigrationBlockers } from '../migration/blockers.ts';
import type { VFIOMigration } from './migration.ts';
import type { OnOffAuto } from './properties.ts';

export const vfioBlockerMessages = {
  disabled: (name: string) => `${name}: Migration is disabled for VFIO device`,
  notSupported: (name: string) => `${name}: VFIO device doesn't support migration`,
  initFailed: (name: string, errno: number, reason: string) =>
    `${name}: Migration couldn't be initialized for VFIO device, err: ${errno} (${reason})`,
  noDirtyTracking: (name: string) =>
    `${name}: VFIO device doesn't support device and IOMMU dirty tracking`,
  dirtyTrackingLimit: (name: string) =>
    `${name}: Migration is currently not supported with large memory VM due to dirty tracking limitation in backend`,
  viommu: (name: string) => `${name}: Migration is currently not supported with vIOMMU enabled`,
  multipleDevices:
    'Multiple VFIO devices migration is supported only if all of them support P2P migration',
} as const;

/** Thrown when a device with `enable-migration=on` cannot migrate (QEMU: realize fails). */
export class VfioRealizeError extends Error {
  override readonly name = 'VfioRealizeError';
}

/**
 * `vfio_block_migration`: `on` turns the reason into a realize error; otherwise it becomes a
 * migration blocker. Returns the function that removes it.
 */
export function blockMigration(
  blockers: MigrationBlockers,
  enable: OnOffAuto,
  reason: string,
): () => void {
  if (enable === 'on') throw new VfioRealizeError(reason);
  return blockers.add(reason);
}

/** `vfio_multiple_devices_migration_is_supported`. */
export function multipleDevicesMigrationSupported(migrations: readonly VFIOMigration[]): boolean {
  return migrations.length <= 1 || migrations.every((m) => m.p2pSupported);
}

/** The VM-wide `multiple_devices_migration_blocker`. */
export class MultipleDevicesBlocker {
  readonly #blockers: MigrationBlockers;
  #remove: (() => void) | null = null;

  constructor(blockers: MigrationBlockers) {
    this.#blockers = blockers;
  }

  get active(): boolean {
    return this.#remove !== null;
  }

  /**
   * `vfio_block_multiple_devices_migration`, at the realize of a device whose migration is
   * already in `migrations`: blocks (once), or throws for an `on` device.
   */
  block(migrations: readonly VFIOMigration[], enable: OnOffAuto): void {
    if (multipleDevicesMigrationSupported(migrations)) return;
    if (enable === 'on') throw new VfioRealizeError(vfioBlockerMessages.multipleDevices);
    this.#remove ??= this.#blockers.add(vfioBlockerMessages.multipleDevices);
  }

  /** `vfio_unblock_multiple_devices_migration`, after a device left. */
  unblock(migrations: readonly VFIOMigration[]): void {
    if (this.#remove === null || !multipleDevicesMigrationSupported(migrations)) return;
    this.#remove();
    this.#remove = null;
  }
}
