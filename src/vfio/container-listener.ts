/**
 * QEMU's VFIO memory listener for the VM's container (hw/vfio/listener.c): what the devices
 * may DMA to. Without a vIOMMU every RAM section is mapped at IOVA = GPA
 * (`vfio_listener_region_add`). With one, the container's address space is the vIOMMU's: the
 * container follows the guest's mappings through a MAP/UNMAP notifier
 * (`vfio_iommu_map_notify`), replayed once at registration, and an unmap goes through the
 * dirty tracker so the pages written through that range are not lost (qemu-migration.md §3.5).
 *
 * The sections a dirty-log sync visits come from here too: the RAM sections, or the replayed
 * vIOMMU mappings (`vfio_sync_iommu_dirty_bitmap`).
 */
import type { GuestMemory } from '../memory/index.ts';
import type { GuestIommu, IommuContainer, IommuMapping } from '../memory/iommu/index.ts';

/** How an unmap is carried out while dirty tracking may be on (VfioDirtyTracking.unmap). */
export type VfioUnmap = (entry: IommuMapping) => void;

export class VfioContainerListener {
  readonly memory: GuestMemory;
  readonly container: IommuContainer;
  readonly viommu: GuestIommu | null;
  #unmap: VfioUnmap;
  #undo: (() => void) | null = null;

  constructor(memory: GuestMemory, container: IommuContainer, viommu: GuestIommu | null) {
    this.memory = memory;
    this.container = container;
    this.viommu = viommu;
    this.#unmap = (e) => void container.unmap(e.iova, e.length);
  }

  /** Who carries out unmaps from now on (the dirty tracker, once it exists). */
  setUnmap(unmap: VfioUnmap): void {
    this.#unmap = unmap;
  }

  /** `vfio_viommu_preset`: the container's address space is not system memory. */
  get viommuPresent(): boolean {
    return this.viommu !== null;
  }

  /** `memory_listener_register`: maps RAM, or follows (and replays) the vIOMMU. */
  register(): void {
    if (this.#undo !== null) return;
    const c = this.container;
    if (this.viommu === null) {
      const mapped: IommuMapping[] = [];
      for (const m of this.memory.mappings) {
        // A caller may have mapped RAM already (a container shared with the devices).
        if (c.translate(m.gpa) === m.gpa) continue;
        c.map(m.gpa, m.length, m.gpa);
        mapped.push({ iova: m.gpa, length: m.length, gpa: m.gpa });
      }
      this.#undo = () => {
        for (const m of mapped) c.unmap(m.iova, m.length);
      };
      return;
    }
    const v = this.viommu;
    const remove = v.addNotifier({
      map: (e) => c.map(e.iova, e.length, e.gpa),
      unmap: (e) => this.#unmap(e),
    });
    v.replay((e) => {
      if (c.translate(e.iova) === undefined) c.map(e.iova, e.length, e.gpa);
    });
    this.#undo = remove;
  }

  unregister(): void {
    this.#undo?.();
    this.#undo = null;
  }

  /**
   * The sections a log sync queries, as (IOVA, length, GPA): the RAM mappings without a
   * vIOMMU, the vIOMMU's current mappings (a replay) with one.
   */
  syncSections(): IommuMapping[] {
    if (this.viommu === null) {
      return this.memory.mappings.map((m) => ({ iova: m.gpa, length: m.length, gpa: m.gpa }));
    }
    const out: IommuMapping[] = [];
    this.viommu.replay((e) => out.push(e));
    return out;
  }
}
