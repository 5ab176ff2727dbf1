/**
 * Starting and stopping the VM as QEMU's system/cpus.c does it: one run state, the vCPUs, the
 * VM-state change handlers and the STOP/RESUME events, in QEMU's order (qemu-migration.md
 * §3.1–§3.2).
 *
 *   vmStop(state):  if live: run state := state; park every vCPU (wait until parked);
 *                   notify(stopping); emit STOP.                           (`do_vm_stop`)
 *   vmStart():      emit RESUME; run state := running; notify(starting);
 *                   resume the vCPUs.                        (`vm_prepare_start`, `vm_start`)
 *
 * Stops and starts are serialized (QEMU holds the BQL across them). Events go to listeners;
 * this layer knows nothing of QMP.
 */
import {
  RunState,
  RunStateTransitionError,
  isValidRunStateTransition,
  runStateIsLive,
} from './runstate.ts';
import {
  type VmChangeStateEntry,
  type VmChangeStateFailure,
  type VmChangeStateHandlerSpec,
  VmChangeStateHandlers,
} from './vm-change-state.ts';

/** The vCPU side of a stop/start: `pause_all_vcpus` / `resume_all_vcpus`. */
export interface VcpuPauser {
  /** Resolves when every vCPU is parked; no guest byte changes afterwards. */
  pauseAll(): Promise<void>;
  resumeAll(): void;
}

/** QMP events of a run-state change, by QEMU's names (they carry no data). */
export type VmRunEvent = { readonly event: 'STOP' } | { readonly event: 'RESUME' };
export type VmRunEventListener = (event: VmRunEvent) => void;

/** `query-status`. */
export interface StatusInfo {
  readonly running: boolean;
  readonly status: RunState;
}

export interface VmRunControlOptions {
  readonly vcpus?: VcpuPauser;
  /** Defaults to prelaunch, as a QEMU process starts. */
  readonly initial?: RunState;
}

export class VmRunControl {
  readonly #handlers = new VmChangeStateHandlers();
  readonly #listeners: VmRunEventListener[] = [];
  readonly #vcpus: VcpuPauser | undefined;
  #state: RunState;
  /** `vm_was_suspended`: a stop from suspended restarts into suspended. */
  #wasSuspended = false;
  #serial: Promise<unknown> = Promise.resolve();

  constructor(options: VmRunControlOptions = {}) {
    this.#vcpus = options.vcpus;
    this.#state = options.initial ?? RunState.PRELAUNCH;
  }

  get runState(): RunState {
    return this.#state;
  }

  /** `runstate_is_running`. */
  isRunning(): boolean {
    return this.#state === RunState.RUNNING;
  }

  queryStatus(): StatusInfo {
    return { running: this.isRunning(), status: this.#state };
  }

  /** `runstate_set`: throws RunStateTransitionError on a transition QEMU does not allow. */
  runstateSet(state: RunState): void {
    if (!isValidRunStateTransition(this.#state, state)) {
      throw new RunStateTransitionError(this.#state, state);
    }
    this.#state = state;
  }

  addVmChangeStateHandler(spec: VmChangeStateHandlerSpec): VmChangeStateEntry {
    return this.#handlers.add(spec);
  }

  /** `vm_state_notify`: the handler walks alone, without changing the run state. */
  vmStateNotify(running: boolean, state: RunState): Promise<VmChangeStateFailure[]> {
    return this.#handlers.notify(running, state);
  }

  /** Subscribes to STOP/RESUME; returns the unsubscribe function. */
  onEvent(listener: VmRunEventListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /**
   * `vm_stop` / `do_vm_stop`: stops a live VM into `state` (paused, finish-migrate, ...).
   * Does nothing when the VM is not live. Resolves with the handlers' failures.
   */
  vmStop(state: RunState = RunState.PAUSED): Promise<VmChangeStateFailure[]> {
    return this.#exclusive(() => this.#doVmStop(state, true));
  }

  /**
   * `vm_stop_force_state`: like vmStop when live, else only moves the run state (e.g. a paused
   * guest entering finish-migrate).
   */
  vmStopForceState(state: RunState): Promise<VmChangeStateFailure[]> {
    return this.#exclusive(async () => {
      if (runStateIsLive(this.#state)) return this.#doVmStop(state, true);
      this.runstateSet(state);
      return [];
    });
  }

  /** `vm_shutdown`: stop into shutdown without a STOP event (process exit). */
  vmShutdown(): Promise<VmChangeStateFailure[]> {
    return this.#exclusive(() => this.#doVmStop(RunState.SHUTDOWN, false));
  }

  /**
   * `vm_start`: no-op when already running. Otherwise RESUME, run state running (or suspended
   * when stopped from suspended), notify the handlers, then let the vCPUs run.
   *
   * QEMU resumes the vCPUs even when a handler failed; with `strict` (the start after an
   * incoming migration) they stay parked then, so a guest whose devices refused their migrated
   * state never executes — the caller stops the VM again. `beforeResume` is the last step
   * before the vCPUs run, skipped when a strict start is refused (the destination tells the
   * source it is done there); if it throws, the vCPUs stay parked and vmStart rejects with its
   * error — the caller stops the VM again.
   */
  vmStart(
    opts: { strict?: boolean; beforeResume?: () => Promise<void> } = {},
  ): Promise<VmChangeStateFailure[]> {
    return this.#exclusive(async () => {
      if (this.isRunning()) return [];
      const state = this.#wasSuspended ? RunState.SUSPENDED : RunState.RUNNING;
      // Sent now although the vCPUs resume a little later, as QEMU does.
      this.#emit({ event: 'RESUME' });
      this.runstateSet(state);
      const failures = await this.#handlers.notify(true, state);
      this.#wasSuspended = false;
      const refused = opts.strict === true && failures.length > 0;
      if (!refused) await opts.beforeResume?.();
      if (state === RunState.RUNNING && !refused) this.#vcpus?.resumeAll();
      return failures;
    });
  }

  async #doVmStop(state: RunState, sendStop: boolean): Promise<VmChangeStateFailure[]> {
    const old = this.#state;
    if (!runStateIsLive(old)) return [];
    this.#wasSuspended = old === RunState.SUSPENDED;
    this.runstateSet(state);
    if (old === RunState.RUNNING) await this.#vcpus?.pauseAll();
    const failures = await this.#handlers.notify(false, state);
    if (sendStop) this.#emit({ event: 'STOP' });
    return failures;
  }

  #emit(event: VmRunEvent): void {
    for (const listener of [...this.#listeners]) listener(event);
  }

  /** Runs `op` after every earlier stop/start has finished. */
  #exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(op, op);
    this.#serial = run.catch(() => undefined);
    return run;
  }
}
