/**
 * The guest IOMMU of a VM configured with `viommu`: the vIOMMU (memory/iommu/viommu.ts), the
 * guest driver that keeps DMA windows mapped and recycles them while the guest runs, and its
 * migration state. The mappings are guest state, so they travel in a FULL section "viommu"
 * (`u32 length`, then the vIOMMU's saved bytes), registered with QEMU's IOMMU priority so it
 * comes before the devices that DMA through it. A destination adopts the loaded windows and
 * its driver carries on from there once the guest runs.
 */
import type { VmRunControl } from '../guest/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import {
  GuestIommu,
  VIOMMU_SECTION_IDSTR,
  VIOMMU_SECTION_VERSION,
  VIOMMU_STATE_MAX_BYTES,
  ViommuDriver,
} from '../memory/iommu/index.ts';
import type { SaveVMRegistry } from '../migration/index.ts';
import { getVBuffer, putVBuffer } from '../migration/stream/index.ts';
import type { VmConfig } from './config.ts';

/** `MIG_PRI_IOMMU`: saved (and loaded) before default-priority entries. */
export const MIG_PRI_IOMMU = 1;

export type ViommuConfig = Exclude<VmConfig['viommu'], false>;

export class VmViommu {
  readonly viommu: GuestIommu;
  readonly driver: ViommuDriver;

  constructor(
    memory: GuestMemory,
    config: ViommuConfig,
    runControl: VmRunControl,
    registry: SaveVMRegistry,
    incoming: boolean,
  ) {
    this.viommu = new GuestIommu(memory);
    this.driver = new ViommuDriver(this.viommu, {
      windows: config.windows,
      windowSize: config['window-size'],
      remapIntervalMs: config['remap-interval'],
      seed: config.seed,
      isRunning: () => runControl.isRunning(),
    });
    // A source boots with its windows; a destination gets them from the stream.
    if (!incoming) this.driver.populate();
    registry.register(
      VIOMMU_SECTION_IDSTR,
      {
        saveState: (f) => {
          putVBuffer(f, this.viommu.save(), 'vIOMMU state', VIOMMU_STATE_MAX_BYTES);
          return Promise.resolve();
        },
        loadState: async (f) => {
          this.viommu.load(await getVBuffer(f, 'vIOMMU state', VIOMMU_STATE_MAX_BYTES));
          this.driver.adopt();
        },
      },
      { instanceId: 0, versionId: VIOMMU_SECTION_VERSION, priority: MIG_PRI_IOMMU },
    );
    this.driver.start();
  }

  destroy(): void {
    this.driver.stop();
  }
}
