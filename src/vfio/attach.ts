/**
 * The entry point a VM's composition root calls: `attachVfioDevices` realizes every VFIO
 * device into the VM's savevm registry, run control, migration notifiers, blockers and guest
 * memory, and returns the `VfioDeviceSet` that owns them: the shared byte counter, the IOMMU
 * container and its listener (RAM, or a vIOMMU's mappings), the "vfio" dirty-log listener,
 * the VM-wide multiple-devices blocker, the state log order, the devices' P2P BARs.
 */
import type { VfioMigrationDevice } from '../device/device.ts';
import type { VmRunControl } from '../guest/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import { GiB } from '../memory/index.ts';
import { IommuContainer } from '../memory/iommu/index.ts';
import type { GuestIommu } from '../memory/iommu/index.ts';
import type { MigrationBlockers } from '../migration/blockers.ts';
import type { MigrationInfoProvider, VfioStatsInfo } from '../migration/info.ts';
import type { MigrationNotifiers } from '../migration/notifiers.ts';
import { stopDevicesUnderStoppedGuest } from './stopped-guest.ts';
import type { SaveVMRegistry } from '../migration/savevm/registry.ts';
import { MultipleDevicesBlocker } from './blockers.ts';
import { VfioContainerListener } from './container-listener.ts';
import { VfioDirtyTracking } from './dirty-tracking.ts';
import type { VfioEnvironment, VfioListeners } from './events.ts';
import { PciSlotAllocator } from './id-path.ts';
import type { VFIOMigration } from './migration.ts';
import { VFIO_PCI_BAR_SIZE, VfioPciDevice } from './pci-device.ts';
import type { VfioHost } from './pci-device.ts';
import { parseVfioPciProperties } from './properties.ts';
import type { VfioPciProperties, VfioPciPropertyInput } from './properties.ts';
import { VfioMigrationStats } from './stats.ts';

/** One `-device vfio-pci,...`: the backend, its guest PCI address and properties. */
export interface VfioDeviceConfig {
  readonly device: VfioMigrationDevice;
  /** Guest PCI path such as "0000:00:05.0"; default: the next free root-bus slot from 05.0. */
  readonly addr?: string;
  /** vfio-pci migration properties: text, an object (e.g. a VM config entry), or parsed. */
  readonly properties?:
    string | VfioPciProperties | Readonly<Record<string, VfioPciPropertyInput | undefined>>;
}

export interface AttachVfioOptions {
  readonly registry: SaveVMRegistry;
  readonly runControl: VmRunControl;
  readonly memory: GuestMemory;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly devices?: readonly VfioDeviceConfig[];
  /**
   * The host IOMMU container the devices DMA through (their DmaMemory should be its
   * `dmaView`). Default: one without dirty tracking, mapping RAM only for the DMA-logging
   * ranges (the devices then DMA wherever they were told).
   */
  readonly container?: IommuContainer;
  /** A guest IOMMU: the container follows its mappings instead of mapping RAM. */
  readonly viommu?: GuestIommu;
  /** The VM emulates an ARM target (x-migration-load-config-after-iter=auto loads late). */
  readonly targetArm?: boolean;
  /** The current migration status (`query-migrate`'s), for the state log; none if omitted. */
  readonly migrationStatus?: () => string | undefined;
  readonly listeners?: VfioListeners;
}

/** Where the 64-bit PCI hole starts: above RAM, 1 GiB aligned, never below 4 GiB. */
export function pciHole64Start(memory: GuestMemory): number {
  const top = memory.mappings.reduce((t, m) => Math.max(t, m.gpa + m.length), 4 * GiB);
  return Math.ceil(top / GiB) * GiB;
}

export class VfioDeviceSet {
  readonly stats = new VfioMigrationStats();
  readonly container: IommuContainer;
  readonly listener: VfioContainerListener;
  readonly dirtyTracking: VfioDirtyTracking;
  readonly multipleDevices: MultipleDevicesBlocker;
  readonly #devices: VfioPciDevice[] = [];
  readonly #slots = new PciSlotAllocator();
  readonly #host: VfioHost;
  readonly #detach: (() => void)[] = [];
  readonly #barBase: number;
  #barsAllocated = 0;

  constructor(opts: AttachVfioOptions) {
    let seq = 0;
    const listeners = opts.listeners ?? {};
    const env: VfioEnvironment = {
      runState: () => opts.runControl.runState,
      migrationStatus: opts.migrationStatus ?? (() => undefined),
      nextSeq: () => seq++,
      listeners,
      targetArm: opts.targetArm === true,
    };
    this.multipleDevices = new MultipleDevicesBlocker(opts.blockers);
    this.container = opts.container ?? new IommuContainer(opts.memory, 'none');
    this.listener = new VfioContainerListener(opts.memory, this.container, opts.viommu ?? null);
    this.#barBase = pciHole64Start(opts.memory);
    this.#host = {
      registry: opts.registry,
      runControl: opts.runControl,
      notifiers: opts.notifiers,
      blockers: opts.blockers,
      env,
      stats: this.stats,
      multipleDevices: this.multipleDevices,
      migrations: () => this.migrations(),
      container: this.container,
      viommuPresent: this.listener.viommuPresent,
      ramSize: opts.memory.ramSize,
    };
    this.dirtyTracking = new VfioDirtyTracking({
      memory: opts.memory,
      listener: this.listener,
      devices: () => this.#devices.map((d) => d.migration),
      bars: () => this.#devices.map((d) => d.bar),
      listeners,
    });
    this.listener.register();
    this.#detach.push(() => this.listener.unregister());
    this.#detach.push(opts.memory.dirtyLogListeners.add(this.dirtyTracking));
    // `migrate_init` resets the VFIO byte counter when a migration starts; a stopped guest's
    // devices stop too (stopped-guest.ts).
    this.#detach.push(
      opts.notifiers.add(async (event) => {
        if (event !== 'precopy-setup') return;
        this.stats.reset();
        await stopDevicesUnderStoppedGuest(opts.runControl, this.migrations());
      }),
    );
  }

  get devices(): readonly VfioPciDevice[] {
    return this.#devices;
  }

  /** Every device's migration object (devices whose migration was initialized). */
  migrations(): VFIOMigration[] {
    return this.#devices.flatMap((d) => (d.migration === null ? [] : [d.migration]));
  }

  find(id: string): VfioPciDevice | undefined {
    return this.#devices.find((d) => d.name === id);
  }

  /**
   * `vfio_mig_active`: `query-migrate` shows `vfio` only when there is a device and none is
   * blocked or without migration.
   */
  get migrationActive(): boolean {
    return (
      this.#devices.length > 0 &&
      this.#devices.every((d) => d.migration !== null && d.blocker === null)
    );
  }

  /** `query-migrate`'s `"vfio": {"transferred": N}`, or undefined when it is not shown. */
  queryMigrateInfo(): VfioStatsInfo | undefined {
    return this.migrationActive ? { transferred: this.stats.transferred } : undefined;
  }

  /**
   * For the core's `outgoing.addInfoProvider`: fills `vfio` in `query-migrate`
   * (`populate_vfio_info`). The counter itself is reset on 'precopy-setup'.
   */
  infoProvider(): MigrationInfoProvider {
    return {
      populate: (info) => {
        const vfio = this.queryMigrateInfo();
        if (vfio !== undefined) info.vfio = vfio;
      },
    };
  }

  /** Realizes one device (hotplug). Throws VfioRealizeError for `enable-migration=on` failures. */
  async add(config: VfioDeviceConfig): Promise<VfioPciDevice> {
    const id = config.device.id;
    if (this.find(id) !== undefined) throw new Error(`a VFIO device with id "${id}" exists`);
    const path =
      config.addr === undefined ? this.#slots.allocate() : this.#slots.claim(config.addr);
    const properties = resolveProperties(config.properties);
    // A 64-bit BAR in the PCI hole, where peers reach the device (never reused).
    const bar = {
      iova: this.#barBase + this.#barsAllocated++ * VFIO_PCI_BAR_SIZE,
      length: VFIO_PCI_BAR_SIZE,
    };
    const dev = new VfioPciDevice(config.device, path, properties, this.#host, bar);
    this.#devices.push(dev);
    try {
      await dev.realize();
    } catch (err) {
      this.#forget(dev);
      throw err;
    }
    return dev;
  }

  /** Unplugs a device: its entry, handlers and blockers go; the VM-wide blocker is re-checked. */
  remove(dev: VfioPciDevice): void {
    if (!this.#devices.includes(dev)) return;
    this.#forget(dev);
    dev.exit();
  }

  /** Removes every device and this set's listeners from the VM. */
  detach(): void {
    for (const dev of [...this.#devices].reverse()) this.remove(dev);
    for (const undo of this.#detach.splice(0)) undo();
  }

  #forget(dev: VfioPciDevice): void {
    this.#devices.splice(this.#devices.indexOf(dev), 1);
    this.#slots.release(dev.path);
  }
}

function resolveProperties(p: VfioDeviceConfig['properties']): VfioPciProperties {
  if (p === undefined || typeof p === 'string') return parseVfioPciProperties(p);
  return parseVfioPciProperties(p as Readonly<Record<string, VfioPciPropertyInput | undefined>>);
}

/**
 * Realizes `opts.devices` in order into one VFIO device set. If a device fails to realize,
 * the ones already realized are removed again and the error is thrown.
 */
export async function attachVfioDevices(opts: AttachVfioOptions): Promise<VfioDeviceSet> {
  const set = new VfioDeviceSet(opts);
  try {
    for (const config of opts.devices ?? []) await set.add(config);
  } catch (err) {
    set.detach();
    throw err;
  }
  return set;
}
