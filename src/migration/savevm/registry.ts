/**
 * The list of entries that take part in migration (`savevm_state.handlers`): registration
 * with idstr and instance id, section ids, ordering by priority then registration, and the
 * destination's lookup by idstr + instance id (qemu-migration.md §1.1, §1.2).
 */
import type { VmdescVmsd } from '../stream/index.ts';
import type { SaveVMHandlers } from './handlers.ts';

/** `MigrationPriority`: higher is saved first; equal priorities keep registration order. */
export const MIG_PRI_DEFAULT = 0;

export interface SaveStateEntry {
  readonly idstr: string;
  readonly instanceId: number;
  /** Version this side writes and the highest it loads. */
  readonly versionId: number;
  /** Global counter value assigned at registration (`savevm_state.global_section_id`). */
  readonly sectionId: number;
  readonly priority: number;
  readonly handlers: SaveVMHandlers;
  /** Order of registration, the tie-break after priority. */
  readonly order: number;
  /**
   * The vmstate description of a FULL section, for the vmdesc JSON (analysis tools only).
   * Without it the entry is an old-style `save_state` one, described by its size.
   */
  readonly vmsd?: VmdescVmsd;
}

export interface RegisterOptions {
  /** A number, or 'auto' for the first free instance of this idstr (`VMSTATE_INSTANCE_ID_ANY`). */
  instanceId?: number | 'auto';
  versionId: number;
  priority?: number;
  /** See SaveStateEntry.vmsd. */
  vmsd?: VmdescVmsd;
}

export class SaveVMRegistry {
  readonly #entries: SaveStateEntry[] = [];
  #nextSectionId = 0;
  #nextOrder = 0;

  /** `register_savevm_live`. Throws when idstr + instance id is already taken. */
  register(idstr: string, handlers: SaveVMHandlers, opts: RegisterOptions): SaveStateEntry {
    if (idstr.length === 0 || Buffer.byteLength(idstr) > 255) {
      throw new Error(`savevm idstr "${idstr}" must be 1 to 255 bytes`);
    }
    const instanceId =
      opts.instanceId === undefined || opts.instanceId === 'auto'
        ? this.#firstFreeInstance(idstr)
        : opts.instanceId;
    if (this.find(idstr, instanceId)) {
      throw new Error(`savevm entry "${idstr}" instance ${instanceId} is already registered`);
    }
    const entry: SaveStateEntry = {
      idstr,
      instanceId,
      versionId: opts.versionId,
      sectionId: this.#nextSectionId++,
      priority: opts.priority ?? MIG_PRI_DEFAULT,
      handlers,
      order: this.#nextOrder++,
      vmsd: opts.vmsd,
    };
    this.#entries.push(entry);
    return entry;
  }

  /** `unregister_savevm` (device unplug). */
  unregister(entry: SaveStateEntry): void {
    const i = this.#entries.indexOf(entry);
    if (i >= 0) this.#entries.splice(i, 1);
  }

  /** Every entry in save order: priority high to low, then registration order. */
  entries(): readonly SaveStateEntry[] {
    return [...this.#entries].sort((a, b) => b.priority - a.priority || a.order - b.order);
  }

  /** `find_se`: the destination binds an incoming START/FULL section to a local entry. */
  find(idstr: string, instanceId: number): SaveStateEntry | undefined {
    return this.#entries.find((e) => e.idstr === idstr && e.instanceId === instanceId);
  }

  #firstFreeInstance(idstr: string): number {
    let id = 0;
    while (this.find(idstr, id)) id++;
    return id;
  }
}
