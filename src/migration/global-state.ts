/**
 * "globalstate" (migration/global_state.c): a non-iterable entry, version 1, carrying the run
 * state the source had right before it stopped for the switchover. The destination uses it
 * to decide whether to start the guest after loading (qemu-migration.md §2.6).
 *
 * Payload (vmstate "globalstate" v1): `u32 size` (strlen + 1), then the name in a 100-byte
 * NUL-padded buffer, e.g. "running" or "prelaunch".
 */
import { isRunState } from '../guest/runstate.ts';
import type { RunState } from '../guest/runstate.ts';
import type { VmRunControl } from '../guest/run-control.ts';
import type { SaveVMHandlers } from './savevm/handlers.ts';
import type { SaveVMRegistry } from './savevm/registry.ts';
import type { QEMUFileReader, QEMUFileWriter, VmdescVmsd } from './stream/index.ts';

export const GLOBAL_STATE_IDSTR = 'globalstate';
export const GLOBAL_STATE_VERSION_ID = 1;
/** `char runstate[100]`. */
export const GLOBAL_STATE_RUNSTATE_SIZE = 100;
/** Bytes of the FULL section's payload. */
export const GLOBAL_STATE_PAYLOAD_SIZE = 4 + GLOBAL_STATE_RUNSTATE_SIZE;

/** How QEMU describes the section in the vmdesc. */
export const GLOBAL_STATE_VMSD: VmdescVmsd = {
  vmsd_name: GLOBAL_STATE_IDSTR,
  version: GLOBAL_STATE_VERSION_ID,
  fields: [
    { name: 'size', type: 'uint32', size: 4 },
    { name: 'runstate', type: 'buffer', size: GLOBAL_STATE_RUNSTATE_SIZE },
  ],
};

export function putGlobalState(w: QEMUFileWriter, runState: string): void {
  const name = Buffer.alloc(GLOBAL_STATE_RUNSTATE_SIZE);
  const len = name.write(runState, 'latin1');
  if (len !== runState.length || len >= GLOBAL_STATE_RUNSTATE_SIZE) {
    throw new RangeError(`globalstate: run state '${runState}' does not fit`);
  }
  w.putBe32(len + 1);
  w.putBuffer(name);
}

/** Reads the payload; the name must be a run state QEMU knows. */
export async function readGlobalState(r: QEMUFileReader): Promise<RunState> {
  await r.getBe32('globalstate size');
  const buf = await r.getBytes(
    GLOBAL_STATE_RUNSTATE_SIZE,
    'globalstate runstate',
    GLOBAL_STATE_RUNSTATE_SIZE,
  );
  // Like QEMU, the name ends at the first NUL or at the last byte of the buffer.
  const nul = buf.indexOf(0);
  const name = buf.toString('latin1', 0, nul < 0 ? GLOBAL_STATE_RUNSTATE_SIZE - 1 : nul);
  if (!isRunState(name)) throw new Error(`globalstate: '${name}' is not a run state`);
  return name;
}

export class GlobalState implements SaveVMHandlers {
  readonly #runControl: VmRunControl;
  readonly #optional: boolean;
  #stored: RunState | null = null;
  #received: RunState | null = null;

  /**
   * `optional` is the migration property `store-global-state` off: then the section is only
   * sent for run states other than running and paused (`global_state_needed`).
   */
  constructor(runControl: VmRunControl, opts: { optional?: boolean } = {}) {
    this.#runControl = runControl;
    this.#optional = opts.optional ?? false;
  }

  /** `global_state_store`: remember the run state now, before the VM is stopped. */
  store(): void {
    this.#stored = this.#runControl.runState;
  }

  /** `global_state_received` + `global_state_get_runstate`: null when no section came. */
  received(): RunState | null {
    return this.#received;
  }

  savePrepare(): void {
    this.#stored = null;
  }

  saveStateNeeded(): boolean {
    if (!this.#optional) return true;
    const state = this.#runState();
    return state !== 'running' && state !== 'paused';
  }

  saveState(f: QEMUFileWriter): Promise<void> {
    putGlobalState(f, this.#runState());
    return Promise.resolve();
  }

  #runState(): RunState {
    return this.#stored ?? this.#runControl.runState;
  }

  loadSetup(): Promise<void> {
    this.#received = null;
    return Promise.resolve();
  }

  async loadState(f: QEMUFileReader): Promise<void> {
    this.#received = await readGlobalState(f);
  }
}

/** Registers `globalState` as "globalstate" (instance 0, version 1). */
export function registerGlobalState(registry: SaveVMRegistry, globalState: GlobalState): void {
  registry.register(GLOBAL_STATE_IDSTR, globalState, {
    instanceId: 0,
    versionId: GLOBAL_STATE_VERSION_ID,
    vmsd: GLOBAL_STATE_VMSD,
  });
}
