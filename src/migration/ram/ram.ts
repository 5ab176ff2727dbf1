/**
 * RAM as a savevm entry: idstr "ram", instance 0, version 4, registered before every entry
 * that saves state, so it precedes every device in setup, iterate and complete
 * (qemu-migration.md §1.1).
 */
import type { GuestMemory } from '../../memory/guest-memory.ts';
import type { LoadContext, PendingSizes, RateLimit, SaveVMHandlers } from '../savevm/handlers.ts';
import type { SaveVMRegistry } from '../savevm/registry.ts';
import type { QEMUFileReader, QEMUFileWriter } from '../stream/index.ts';
import { RAM_SECTION_IDSTR, RAM_SECTION_VERSION_ID } from './format.ts';
import { RamLoadState } from './load.ts';
import { RamSaveState } from './save.ts';
import type { RamSaveEnvironment } from './save.ts';

function savesState(h: SaveVMHandlers): boolean {
  return (
    h.saveSetup !== undefined ||
    h.saveLiveIterate !== undefined ||
    h.saveComplete !== undefined ||
    h.saveState !== undefined
  );
}

export class RamHandler implements SaveVMHandlers {
  readonly save: RamSaveState;
  readonly load: RamLoadState;

  constructor(memory: GuestMemory, env: RamSaveEnvironment) {
    this.save = new RamSaveState(memory, env);
    this.load = new RamLoadState(memory);
  }

  saveSetup(f: QEMUFileWriter): Promise<void> {
    return this.save.setup(f);
  }

  saveLiveIterate(f: QEMUFileWriter, rateLimit: RateLimit): Promise<boolean> {
    return this.save.iterate(f, rateLimit);
  }

  statePendingEstimate(pending: PendingSizes): void {
    this.save.pendingEstimate(pending);
  }

  statePendingExact(pending: PendingSizes): Promise<void> {
    return this.save.pendingExact(pending);
  }

  saveComplete(f: QEMUFileWriter): Promise<void> {
    return this.save.complete(f);
  }

  saveCleanup(): Promise<void> {
    return this.save.cleanup();
  }

  loadSetup(ctx?: LoadContext): Promise<void> {
    this.load.setup(ctx === undefined ? undefined : () => ctx.multifdRecvSync());
    return Promise.resolve();
  }

  loadState(f: QEMUFileReader, versionId: number): Promise<void> {
    return this.load.load(f, versionId);
  }

  loadCleanup(): Promise<void> {
    this.load.cleanup();
    return Promise.resolve();
  }
}

/** `ram_mig_init`: before every other entry that saves state. */
export function registerRam(
  registry: SaveVMRegistry,
  memory: GuestMemory,
  env: RamSaveEnvironment,
): RamHandler {
  const saving = registry.entries().find((e) => savesState(e.handlers));
  if (saving !== undefined) {
    throw new Error(`RAM must be registered before '${saving.idstr}', which saves state`);
  }
  const handler = new RamHandler(memory, env);
  registry.register(RAM_SECTION_IDSTR, handler, {
    instanceId: 0,
    versionId: RAM_SECTION_VERSION_ID,
  });
  return handler;
}
